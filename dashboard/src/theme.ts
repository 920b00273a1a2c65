// Light, dark, or the system's choice (prefers-color-scheme), remembered in localStorage.
export type Theme = 'system' | 'light' | 'dark';
const KEY = 'sentry.theme';

export function loadTheme(): Theme {
  try {
    const t = window.localStorage.getItem(KEY);
    if (t === 'light' || t === 'dark') return t;
  } catch {
    // Storage may be off; the system's choice it is.
  }
  return 'system';
}

export function applyTheme(theme: Theme): void {
  try {
    if (theme === 'system') window.localStorage.removeItem(KEY);
    else window.localStorage.setItem(KEY, theme);
  } catch {
    // Not remembered, still applied.
  }
  if (theme === 'system') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
}

/** The theme in effect: the explicit one, or the system's. */
export function effectiveTheme(theme: Theme): 'light' | 'dark' {
  if (theme !== 'system') return theme;
  return window.matchMedia?.('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}
