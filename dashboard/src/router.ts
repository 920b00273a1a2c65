// Routes live in the URL fragment (`#/runs/3`), so the server has no client paths to know.
import { useEffect, useState } from 'preact/hooks';
import { type FleetFilters, fleetQuery, parseFleetQuery } from './fleet';

export type Route =
  | { page: 'runs' }
  | { page: 'run'; id: number }
  | { page: 'incidents'; run?: number; kind?: string; action?: string }
  | ({ page: 'fleet' } & FleetFilters)
  | { page: 'audit' }
  | { page: 'not-found'; path: string };

export function parseRoute(hash: string): Route {
  const raw = hash.replace(/^#/, '') || '/';
  const [path = '/', query = ''] = raw.split('?');
  const params = new URLSearchParams(query);
  const parts = path.split('/').filter(Boolean);
  if (parts.length === 0 || (parts.length === 1 && parts[0] === 'runs')) return { page: 'runs' };
  if (parts[0] === 'runs' && parts.length === 2 && /^\d+$/.test(parts[1] ?? '')) {
    return { page: 'run', id: Number(parts[1]) };
  }
  if (parts[0] === 'incidents' && parts.length === 1) {
    const run = params.get('run');
    const route: Route = { page: 'incidents' };
    if (run && /^\d+$/.test(run)) route.run = Number(run);
    const kind = params.get('kind');
    if (kind) route.kind = kind;
    const action = params.get('action');
    if (action) route.action = action;
    return route;
  }
  if (parts[0] === 'fleet' && parts.length === 1) return { page: 'fleet', ...parseFleetQuery(params) };
  if (parts[0] === 'audit' && parts.length === 1) return { page: 'audit' };
  return { page: 'not-found', path };
}

export function href(route: Route): string {
  switch (route.page) {
    case 'runs':
      return '#/runs';
    case 'run':
      return `#/runs/${route.id}`;
    case 'incidents': {
      const q = new URLSearchParams();
      if (route.run !== undefined) q.set('run', String(route.run));
      if (route.kind) q.set('kind', route.kind);
      if (route.action) q.set('action', route.action);
      const s = q.toString();
      return `#/incidents${s ? `?${s}` : ''}`;
    }
    case 'fleet': {
      const { page: _page, ...filters } = route;
      const s = fleetQuery(filters).toString();
      return `#/fleet${s ? `?${s}` : ''}`;
    }
    case 'audit':
      return '#/audit';
    case 'not-found':
      return `#${route.path}`;
  }
}

/**
 * Replaces the current route without a new history entry (typing in a filter should not make
 * Back step through every keystroke), telling `useRoute` as a hash change would.
 */
export function replaceRoute(route: Route): void {
  window.history.replaceState(window.history.state, '', href(route));
  window.dispatchEvent(new HashChangeEvent('hashchange'));
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.hash));
  useEffect(() => {
    const on = () => setRoute(parseRoute(window.location.hash));
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return route;
}
