// How numbers and times read on the page.
export function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '–';
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds % 60);
  if (m < 60) return `${m} min ${s} s`;
  const h = Math.floor(m / 60);
  return `${h} h ${m % 60} min`;
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 && i > 0 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

export function pct(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  return `${n < 10 ? n.toFixed(1) : Math.round(n)}%`;
}

export function time(unixS: number): string {
  return new Date(unixS * 1000).toLocaleString(undefined, {
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  });
}

/** A time compactly: the clock alone today, with the day otherwise (for tables). */
export function shortTime(unixS: number, nowS: number = Date.now() / 1000): string {
  const d = new Date(unixS * 1000);
  const sameDay = d.toDateString() === new Date(nowS * 1000).toDateString();
  return d.toLocaleString(
    undefined,
    sameDay
      ? { hour: '2-digit', minute: '2-digit', second: '2-digit' }
      : { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' },
  );
}

export function command(argv: readonly string[]): string {
  return argv
    .map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`))
    .join(' ');
}

/** Seconds a run has lasted: to its end, or to now while live. */
export function runDuration(startedAt: number, endedAt: number | null | undefined, nowS: number) {
  return (endedAt ?? nowS) - startedAt;
}

/** A cost in the unit of the price per CPU-hour it was run with (sentry knows no currency). */
export function money(n: number): string {
  return n < 1 ? n.toFixed(4) : n.toFixed(2);
}
