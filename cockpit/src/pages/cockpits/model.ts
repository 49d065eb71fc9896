// A cockpit definition as the API returns it (`citybrain-cockpits` in Rust owns the format),
// and the writing of values the same way the daily briefing writes them.

import { lang } from '../../i18n';

export interface Text {
  en: string;
  zh: string;
}

export type Format = 'int' | 'decimal' | 'percent' | 'fen' | 'text' | 'spark';
export type Level = 'ok' | 'warn' | 'alarm';

export interface PanelDef {
  id: string;
  kind: 'kpi' | 'series' | 'ranking' | 'map' | 'alerts';
  title: Text;
  sql: string;
  unit?: Text;
  format: Format;
  thresholds?: { at: number; level: Level }[];
  limit?: number;
  layer?: 'links' | 'points';
  columns?: { name: string; title: Text; format?: Format }[];
  width?: number;
  briefing: boolean;
}

export interface Cockpit {
  id: string;
  department: string;
  shared_with?: string[];
  title: Text;
  purpose?: Text;
  panel: PanelDef[];
}

export interface PanelAnswer {
  at: string;
  day_start: string;
  day_end: string;
  rows?: Record<string, unknown>[];
  denied?: string;
  level?: Level | null;
}

export const LEVEL_COLOR: Record<Level, string> = { ok: '#2fbf71', warn: '#f2c14e', alarm: '#e03e3e' };

export function text(t: Text): string {
  return lang() === 'zh' ? t.zh : t.en;
}

/** A row's own level (its query's `level` column), which outranks the panel's thresholds. */
export function rowLevel(r: Record<string, unknown>): Level | null {
  const l = r.level;
  return l === 'ok' || l === 'warn' || l === 'alarm' ? l : null;
}

/** A list of numbers as SQL hands it over (an array, or text "1,2,3"). */
export function numbers(v: unknown): number[] {
  const items = Array.isArray(v) ? v : typeof v === 'string' ? v.split(',') : [];
  return items.map(Number).filter(Number.isFinite);
}

/** The level of a value: the last threshold at or below it (none below the first). */
export function levelOf(p: PanelDef, value: number): Level | null {
  let level: Level | null = null;
  for (const th of p.thresholds ?? []) if (value >= th.at) level = th.level;
  return level;
}

function group(n: number, digits: number): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** As `Format::write` in Rust, so the page and the briefing agree to the character. */
export function write(format: Format | undefined, value: number): string {
  if (!Number.isFinite(value)) return '—';
  switch (format ?? 'int') {
    case 'int':
      return group(Math.round(value), 0);
    case 'decimal':
      return value.toFixed(2);
    case 'percent':
      return `${(value * 100).toFixed(0)}%`;
    case 'fen':
      return `¥${group(value / 100, 2)}`;
    case 'text':
    case 'spark':
      return String(value);
  }
}
