import { useEffect, useMemo, useState } from 'preact/hooks';
import { Api, ApiError } from './api/client';
import { forgetKey, loadKey, saveKey } from './auth';
import { KeyPrompt } from './components/KeyPrompt';
import { SessionContext } from './context';
import { LiveBus, LiveContext, useLiveState } from './live';
import { AuditPage } from './pages/Audit';
import { FleetPage } from './pages/Fleet';
import { IncidentsPage } from './pages/Incidents';
import { RunPage } from './pages/Run';
import { RunsPage } from './pages/Runs';
import { type Route, useRoute } from './router';
import { applyTheme, effectiveTheme, loadTheme, type Theme } from './theme';

function Connection() {
  const s = useLiveState();
  const [text, cls] =
    s.state === 'live'
      ? ['Live', 'live']
      : s.state === 'connecting'
        ? ['Connecting…', 'connecting']
        : s.state === 'reconnecting'
          ? ['Server unreachable, retrying…', 'down']
          : ['Stream refused', 'down'];
  return (
    <span class={`conn conn-${cls}`} role="status" aria-live="polite" title={'error' in s ? s.error.message : ''}>
      <span class="dot" aria-hidden="true" /> {text}
    </span>
  );
}

function ThemeToggle({ theme, onChange }: { theme: Theme; onChange: (t: Theme) => void }) {
  const next: Record<Theme, Theme> = { system: 'light', light: 'dark', dark: 'system' };
  return (
    <button
      type="button"
      class="theme-toggle"
      onClick={() => onChange(next[theme])}
      aria-label={`Theme: ${theme === 'system' ? `system (${effectiveTheme(theme)})` : theme}; switch to ${next[theme]}`}
    >
      {theme === 'system' ? 'Auto' : theme === 'light' ? 'Light' : 'Dark'} theme
    </button>
  );
}

function Page({ route }: { route: Route }) {
  switch (route.page) {
    case 'runs':
      return <RunsPage />;
    case 'run':
      return <RunPage key={route.id} id={route.id} />;
    case 'incidents': {
      const { page: _page, ...filters } = route;
      return <IncidentsPage {...filters} />;
    }
    case 'fleet': {
      const { page: _page, ...filters } = route;
      return <FleetPage {...filters} />;
    }
    case 'audit':
      return <AuditPage />;
    case 'not-found':
      return (
        <section>
          <h1>Nothing here</h1>
          <p>
            There is no page <code>{route.path}</code>. <a href="#/runs">See the runs</a>.
          </p>
        </section>
      );
  }
}

export function App() {
  const [key, setKey] = useState<string | undefined>(() => loadKey());
  const [refused, setRefused] = useState<string | undefined>();
  const [theme, setTheme] = useState<Theme>(() => loadTheme());
  const route = useRoute();

  useEffect(() => applyTheme(theme), [theme]);

  const session = useMemo(() => {
    const api = new Api(key ?? '');
    return {
      api,
      report: (e: unknown) => {
        if (e instanceof ApiError && e.kind === 'unauthorized') {
          forgetKey();
          setRefused(e.message);
          setKey(undefined);
        }
      },
    };
  }, [key]);

  const bus = useMemo(() => new LiveBus(), [key]);
  useEffect(() => {
    if (!key) return undefined;
    const ctl = new AbortController();
    bus.subscribeState((s) => {
      if (s.state === 'failed') session.report(s.error);
    });
    bus.start(session.api, ctl.signal);
    return () => ctl.abort();
  }, [bus, key, session]);

  if (!key) {
    return (
      <KeyPrompt
        {...(refused ? { problem: refused } : {})}
        onKey={(k) => {
          saveKey(k);
          setRefused(undefined);
          setKey(k);
        }}
      />
    );
  }

  const current = route.page === 'run' ? 'runs' : route.page;
  const nav = (page: string, label: string, to: string) => (
    <a href={to} aria-current={current === page ? 'page' : undefined}>
      {label}
    </a>
  );
  return (
    <SessionContext.Provider value={session}>
      <LiveContext.Provider value={bus}>
        <a class="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById('main')?.focus(); }}>
          Skip to content
        </a>
        <header class="top">
          <a class="brand" href="#/runs">
            sentry
          </a>
          <nav aria-label="Main">
            {nav('runs', 'Runs', '#/runs')}
            {nav('fleet', 'Fleet', '#/fleet')}
            {nav('incidents', 'Incidents', '#/incidents')}
            {nav('audit', 'Audit log', '#/audit')}
          </nav>
          <div class="top-right">
            <Connection />
            <ThemeToggle theme={theme} onChange={setTheme} />
            <button
              type="button"
              onClick={() => {
                forgetKey();
                setKey(undefined);
              }}
            >
              Forget key
            </button>
          </div>
        </header>
        <main id="main" tabIndex={-1}>
          <Page route={route} />
        </main>
      </LiveContext.Provider>
    </SessionContext.Provider>
  );
}
