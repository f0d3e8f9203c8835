import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { useEffect, useRef } from 'preact/hooks';
import type { SamplePoint } from '../../view-types.js';
import { Empty, Section } from './section.js';

const PALETTE = ['#2563eb', '#d97706', '#059669', '#db2777', '#7c3aed', '#0891b2', '#65a30d', '#dc2626'];

interface SeriesSpec {
  label: string;
  color: string;
  value: (p: SamplePoint) => number | null;
  fill?: boolean;
}

function axisColor(): string {
  return getComputedStyle(document.documentElement).getPropertyValue('--muted').trim() || '#5b6470';
}

function gridColor(): string {
  return getComputedStyle(document.documentElement).getPropertyValue('--grid').trim() || '#e5e7eb';
}

/** One uPlot chart over the sample points; rebuilt when its series change, resized with its box. */
function Chart({
  title,
  points,
  series,
  unit,
  max,
}: {
  title: string;
  points: SamplePoint[];
  series: SeriesSpec[];
  unit: string;
  max?: number;
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const key = series.map((s) => s.label).join('|');

  const data = (): uPlot.AlignedData => [
    points.map((p) => p.t / 1000),
    ...series.map((s) => points.map((p) => s.value(p))),
  ];

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const font = getComputedStyle(el).fontSize;
    const px = parseFloat(font) || 14;
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height: Math.round(px * 9),
      legend: { show: true, live: false },
      padding: [8, Math.round(px * 1.6), 0, 0],
      cursor: { drag: { x: false, y: false }, points: { show: false } },
      scales: { x: { time: true }, y: { range: (_u, lo, hi) => [0, Math.max(max ?? 0, hi, lo + 1)] } },
      axes: [
        {
          stroke: axisColor(),
          grid: { stroke: gridColor(), width: 1 },
          ticks: { stroke: gridColor() },
          font: `${Math.round(px * 0.8)}px system-ui, sans-serif`,
          space: Math.round(px * 6),
          // Local wall-clock time; seconds only when the chart spans a few minutes.
          values: (u, splits) => {
            const span = (u.scales.x?.max ?? 0) - (u.scales.x?.min ?? 0);
            return splits.map((v) =>
              new Date(v * 1000).toLocaleTimeString([], {
                hour: '2-digit',
                minute: '2-digit',
                ...(span < 600 ? { second: '2-digit' } : {}),
              }),
            );
          },
        },
        {
          stroke: axisColor(),
          grid: { stroke: gridColor(), width: 1 },
          ticks: { stroke: gridColor() },
          font: `${Math.round(px * 0.8)}px system-ui, sans-serif`,
          size: Math.round(px * 3.4),
          values: (_u, vals) => vals.map((v) => `${v}${unit}`),
        },
      ],
      series: [
        { label: 'time' },
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 2,
          fill: s.fill ? `${s.color}22` : undefined,
          spanGaps: false,
          points: { show: false },
        })),
      ],
    };
    const u = new uPlot(opts, data(), el);
    plot.current = u;
    const ro = new ResizeObserver(() => {
      const w = Math.max(200, el.clientWidth);
      const fpx = parseFloat(getComputedStyle(el).fontSize) || 14;
      u.setSize({ width: w, height: Math.round(fpx * 9) });
    });
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [key]);

  useEffect(() => {
    plot.current?.setData(data());
  }, [points, key]);

  return (
    <figure class="chart">
      <figcaption>{title}</figcaption>
      <div ref={box} class="chart-box" role="img" aria-label={`${title} over the last hours`} />
    </figure>
  );
}

export function ChartsSection({ series, sampleMs }: { series: SamplePoint[]; sampleMs: number }) {
  const workerIds = [...new Set(series.flatMap((p) => Object.keys(p.busy)))].sort();
  const span = series.length > 1 ? (series[series.length - 1]!.t - series[0]!.t) / 60_000 : 0;
  return (
    <Section
      id="charts"
      title="Charts"
      count={
        span >= 1
          ? `last ${span >= 90 ? `${Math.round(span / 60)} h` : `${Math.round(span)} min`}`
          : undefined
      }
    >
      {series.length < 2 ? (
        <Empty title="Collecting data">
          <p>
            One point every {Math.round(sampleMs / 1000)} s: queue depth, waiting time and how busy each GPU
            is. The charts fill in as the workshop runs (the last 6 hours are kept).
          </p>
        </Empty>
      ) : (
        <div class="charts">
          <Chart
            title="Queue depth (jobs)"
            points={series}
            unit=""
            max={4}
            series={[
              { label: 'waiting', color: PALETTE[1]!, value: (p) => p.pending, fill: true },
              { label: 'running', color: PALETTE[0]!, value: (p) => p.running },
            ]}
          />
          <Chart
            title="Waiting time (minutes)"
            points={series}
            unit=""
            max={1}
            series={[
              {
                label: 'longest waiting now',
                color: PALETTE[3]!,
                value: (p) => (p.waitMax === null ? 0 : Math.round((p.waitMax / 60) * 10) / 10),
              },
              {
                label: 'average wait of started jobs',
                color: PALETTE[2]!,
                value: (p) => (p.waitAvg === null ? null : Math.round((p.waitAvg / 60) * 10) / 10),
              },
            ]}
          />
          <Chart
            title="GPU busy (% of time)"
            points={series}
            unit="%"
            max={100}
            series={
              workerIds.length > 0
                ? workerIds.map((id, i) => ({
                    label: id.includes(':') ? id.slice(id.indexOf(':') + 1) : id,
                    color: PALETTE[i % PALETTE.length]!,
                    value: (p: SamplePoint) => (id in p.busy ? Math.round((p.busy[id] ?? 0) * 100) : null),
                  }))
                : [{ label: 'no GPU connected', color: PALETTE[0]!, value: () => null }]
            }
          />
        </div>
      )}
    </Section>
  );
}
