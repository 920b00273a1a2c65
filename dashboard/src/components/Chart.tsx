import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

/** One series over time: x in seconds since the run started. */
export interface Series {
  xs: number[];
  ys: (number | null)[];
  /** Bumped whenever xs/ys changed in place (appends). */
  version: number;
}

interface Props {
  title: string;
  series: Series;
  format: (v: number | null) => string;
  /** A CSS custom property holding the line colour. */
  colorVar: string;
  height?: number;
}

/** Drawing cost is recorded as user timing, so a trace (or a test) can read it. */
export const DRAW_MEASURE = 'sentry:chart-draw';
let measures = 0;

/** Labels for the time axis (seconds since the start), as precise as the tick spacing needs. */
export function timeTicks(ticks: number[]): string[] {
  const step = ticks.length > 1 ? Math.abs((ticks[1] ?? 0) - (ticks[0] ?? 0)) : 1;
  return ticks.map((t) => {
    if (step >= 60 && t % 60 === 0) return t >= 3600 && t % 3600 === 0 ? `${t / 3600} h` : `${t / 60} min`;
    const digits = step >= 1 ? 0 : step >= 0.1 ? 1 : 2;
    return `${t.toFixed(digits)} s`;
  });
}

function cssVar(name: string, fallback: string): string {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

/** A live line chart (uPlot on a canvas): redraws at most once a frame, however fast data comes. */
export function Chart({ title, series, format, colorVar, height = 160 }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const frame = useRef(0);
  const latest = useRef(series);
  latest.current = series;
  const formatRef = useRef(format);
  formatRef.current = format;

  useEffect(() => {
    const el = box.current;
    if (!el) return undefined;
    const stroke = cssVar(colorVar, '#1f6feb');
    const axisColor = cssVar('--muted', '#888');
    const grid = cssVar('--grid', 'rgba(128,128,128,0.15)');
    const axis = {
      stroke: axisColor,
      grid: { stroke: grid, width: 1 },
      ticks: { stroke: grid, width: 1 },
    };
    const opts: uPlot.Options = {
      width: Math.max(el.clientWidth, 200),
      height,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: false }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [
        { ...axis, values: (_u, ticks) => timeTicks(ticks) },
        { ...axis, size: 70, values: (_u, ticks) => ticks.map((t) => formatRef.current(t)) },
      ],
      series: [{}, { label: title, stroke, width: 1.5, fill: `${stroke}22`, points: { show: false } }],
      hooks: {
        drawClear: [() => performance.mark(`${DRAW_MEASURE}:start`)],
        draw: [
          () => {
            performance.measure(DRAW_MEASURE, `${DRAW_MEASURE}:start`);
            if (++measures > 2000) {
              performance.clearMeasures(DRAW_MEASURE);
              measures = 0;
            }
          },
        ],
      },
    };
    const u = new uPlot(opts, [latest.current.xs, latest.current.ys] as uPlot.AlignedData, el);
    plot.current = u;
    const resize = new ResizeObserver(() => {
      const w = Math.max(el.clientWidth, 200);
      if (Math.abs(w - u.width) > 1) u.setSize({ width: w, height });
    });
    resize.observe(el);
    return () => {
      resize.disconnect();
      cancelAnimationFrame(frame.current);
      u.destroy();
      plot.current = null;
    };
  }, [title, colorVar, height]);

  useEffect(() => {
    if (frame.current) return;
    frame.current = requestAnimationFrame(() => {
      frame.current = 0;
      const s = latest.current;
      plot.current?.setData([s.xs, s.ys] as uPlot.AlignedData);
    });
  }, [series.version]);

  const last = series.ys.length ? series.ys[series.ys.length - 1] : undefined;
  return (
    <figure class="chart">
      <figcaption>
        <span>{title}</span>
        <span class="chart-value" data-testid={`value-${title}`}>
          {last === undefined ? '–' : format(last)}
        </span>
      </figcaption>
      <div
        class="chart-canvas"
        ref={box}
        role="img"
        aria-label={`${title} over time, ${series.xs.length} samples, latest ${last === undefined ? 'none' : format(last)}`}
        data-samples={series.xs.length}
      />
    </figure>
  );
}
