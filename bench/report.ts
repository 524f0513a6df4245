/**
 * The benchmark's results: one object per metric, printed as a table and written as JSON.
 * A target is printed next to its measurement with met/missed; nothing here fails a run.
 */
import { writeFileSync } from 'node:fs';

export interface Baseline {
  readonly name: string;
  readonly value: number;
}

export interface Target {
  /** As printed: `<= 1.05x`, `< 200 ms`. */
  readonly text: string;
  readonly met: boolean;
}

export interface Metric {
  readonly section: string;
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  readonly baseline?: Baseline | undefined;
  /** When not value / baseline: how it was computed is in the note or the section. */
  readonly ratio?: number | undefined;
  /** A second comparison, for connection costs: the same client under plain MASQUERADE. */
  readonly masquerade?: Baseline | undefined;
  readonly target?: Target | undefined;
  /** What limits it, how it was measured, or what was checked. */
  readonly note?: string | undefined;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? Number.NaN)
    : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

export function ratioOf(value: number, baseline: Baseline | undefined): number | null {
  return baseline && baseline.value > 0 ? value / baseline.value : null;
}

function ratioOfMetric(metric: Metric): number | null {
  return metric.ratio ?? ratioOf(metric.value, metric.baseline);
}

/** `value <= limit`, as a Target. */
export function atMost(value: number, limit: number, text: string): Target {
  return { text, met: value <= limit };
}

function round(value: number): number {
  return Number(value.toPrecision(4));
}

function metricJson(metric: Metric): Record<string, unknown> {
  const ratio = ratioOfMetric(metric);
  const toMasquerade = ratioOf(metric.value, metric.masquerade);
  return {
    section: metric.section,
    name: metric.name,
    value: round(metric.value),
    unit: metric.unit,
    baselineName: metric.baseline?.name ?? null,
    baselineValue: metric.baseline ? round(metric.baseline.value) : null,
    ratio: ratio === null ? null : round(ratio),
    ...(metric.masquerade
      ? {
          masqueradeBaselineName: metric.masquerade.name,
          masqueradeBaselineValue: round(metric.masquerade.value),
          ratioToMasquerade: toMasquerade === null ? null : round(toMasquerade),
        }
      : {}),
    target: metric.target?.text ?? null,
    met: metric.target?.met ?? null,
    ...(metric.note ? { note: metric.note } : {}),
  };
}

export function writeResults(file: string, metrics: readonly Metric[], extra: object): void {
  const body = { ...extra, metrics: metrics.map(metricJson) };
  writeFileSync(file, JSON.stringify(body, null, 2) + '\n');
}

function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return '-';
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

function formatRatio(ratio: number | null): string {
  return ratio === null ? '' : `${ratio.toFixed(2)}x`;
}

const HEADER = ['metric', 'value', 'baseline', 'ratio', 'x (a)', 'target', ''];

function rowOf(metric: Metric): string[] {
  return [
    metric.name,
    `${formatNumber(metric.value)} ${metric.unit}`,
    metric.baseline ? `${metric.baseline.name}: ${formatNumber(metric.baseline.value)}` : '',
    formatRatio(ratioOfMetric(metric)),
    formatRatio(ratioOf(metric.value, metric.masquerade)),
    metric.target?.text ?? '',
    metric.target ? (metric.target.met ? 'met' : 'MISSED') : '',
  ];
}

/** One table per section, columns padded to their widest cell; notes below each section. */
export function formatTable(metrics: readonly Metric[]): string {
  const rows = metrics.map(rowOf);
  const widths = HEADER.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join('  ')
      .trimEnd();
  const out: string[] = [];
  let section: string | undefined;
  let notes: string[] = [];
  const flushNotes = () => {
    for (const note of notes) out.push(`    note: ${note}`);
    notes = [];
  };
  metrics.forEach((metric, index) => {
    if (metric.section !== section) {
      flushNotes();
      section = metric.section;
      out.push('', `== ${section}`, line(HEADER));
    }
    out.push(line(rows[index] ?? []));
    if (metric.note) notes.push(`${metric.name}: ${metric.note}`);
  });
  flushNotes();
  return out.join('\n') + '\n';
}
