// The API key: handed over once in the URL fragment (`#token=…`, which browsers never send to
// a server), then kept in sessionStorage (this tab only) and removed from the address bar.
const STORAGE_KEY = 'sentry.apiKey';

function storage(): Storage | undefined {
  try {
    return window.sessionStorage;
  } catch {
    return undefined;
  }
}

/** Takes a key out of the fragment (and the fragment out of the address bar). */
export function takeKeyFromFragment(): string | undefined {
  const hash = window.location.hash;
  const m = /(?:^#|[#&?])token=([^&]*)/.exec(hash);
  if (!m) return undefined;
  let key: string;
  try {
    key = decodeURIComponent(m[1] ?? '').trim();
  } catch {
    key = '';
  }
  const rest = hash.replace(/[#&?]?token=[^&]*/, '').replace(/^#?&/, '#');
  const url = window.location.pathname + window.location.search + (rest.length > 1 ? rest : '#/');
  window.history.replaceState(null, '', url);
  return key || undefined;
}

export function loadKey(): string | undefined {
  const fromUrl = takeKeyFromFragment();
  if (fromUrl) {
    saveKey(fromUrl);
    return fromUrl;
  }
  return storage()?.getItem(STORAGE_KEY) ?? undefined;
}

export function saveKey(key: string): void {
  storage()?.setItem(STORAGE_KEY, key);
}

export function forgetKey(): void {
  storage()?.removeItem(STORAGE_KEY);
}

/** Accepts a pasted key or a whole `…#token=KEY` URL. */
export function parsePastedKey(text: string): string {
  const t = text.trim();
  const m = /#token=([^&\s]+)/.exec(t);
  if (m) {
    try {
      return decodeURIComponent(m[1] ?? '');
    } catch {
      return m[1] ?? '';
    }
  }
  return t;
}
