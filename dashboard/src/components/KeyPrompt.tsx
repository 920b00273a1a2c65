import { useState } from 'preact/hooks';
import { parsePastedKey } from '../auth';

/** Asks for the API key (never a blank page): why, where to find it, and a field to paste it. */
export function KeyPrompt({ problem, onKey }: { problem?: string; onKey: (key: string) => void }) {
  const [text, setText] = useState('');
  return (
    <main class="key-prompt" id="main">
      <h1>sentry dashboard</h1>
      {problem ? (
        <div class="notice error" role="alert">
          <strong>The API key was refused.</strong>
          <p>{problem}</p>
        </div>
      ) : (
        <p>This page needs the dashboard's API key to show your runs.</p>
      )}
      <p>
        <code>sentry dashboard</code> prints a URL with the key after <code>#token=</code>; open that URL, or paste it
        (or just the key) here. The key stays in this tab only.
      </p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          const key = parsePastedKey(text);
          if (key) onKey(key);
        }}
      >
        <label for="key-input">API key or dashboard URL</label>
        <div class="key-row">
          <input
            id="key-input"
            type="password"
            autoComplete="off"
            spellcheck={false}
            value={text}
            onInput={(e) => setText(e.currentTarget.value)}
            required
          />
          <button type="submit" class="primary">
            Use this key
          </button>
        </div>
      </form>
      <p class="muted small">
        Lost it? It is in the <code>api-key</code> file next to the store, or set your own with{' '}
        <code>SENTRY_API_KEY</code> before starting <code>sentry dashboard</code>.
      </p>
    </main>
  );
}
