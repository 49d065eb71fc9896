import { lang } from './i18n';

/** The city profile (`GET /api/v1/city`), as the cockpit uses it. */
export interface City {
  name: string;
  name_zh?: string;
  time_zone: string;
  plate_prefixes: string[];
  languages: string[];
  map?: { centre: [number, number]; bounds?: [number, number, number, number] };
}

/**
 * The city's clock: index bins are stored in UTC and shown in the city's local time, from
 * its profile (set at sign-in; the demo city's until then).
 */
export let CITY_TZ = 'Asia/Shanghai';

/** Where the map opens when the city has no network yet (the profile's `map`). */
export let CITY_MAP: City['map'] = undefined;

/** Takes the city profile's clock and map (at sign-in). */
export function setCity(city: City): void {
  setCityZone(city.time_zone);
  CITY_MAP = city.map;
}

export function setCityZone(zone: string): void {
  try {
    // A zone the browser does not know would throw at every format: keep the last good one.
    new Intl.DateTimeFormat('en-GB', { timeZone: zone });
    CITY_TZ = zone;
  } catch {
    console.warn(`time zone ${zone} is unknown to this browser; times stay in ${CITY_TZ}`);
  }
}

/** The city's UTC offset at an instant, as `+08:00` (for local times sent to the API). */
export function cityOffset(at: Date): string {
  const name =
    new Intl.DateTimeFormat('en-US', { timeZone: CITY_TZ, timeZoneName: 'longOffset' })
      .formatToParts(at)
      .find((p) => p.type === 'timeZoneName')?.value ?? 'GMT';
  // `GMT+08:00`, `GMT-03:30`, or `GMT` for UTC itself.
  const m = /GMT([+-]\d{2}:\d{2})/.exec(name);
  return m ? m[1] : '+00:00';
}

export function hhmm(iso: string): string {
  return new Date(iso).toLocaleTimeString('en-GB', {
    timeZone: CITY_TZ,
    hour: '2-digit',
    minute: '2-digit',
    hour12: false,
  });
}

export function dateTime(iso: string): string {
  return new Date(iso).toLocaleString(lang() === 'zh' ? 'zh-CN' : 'en-GB', {
    timeZone: CITY_TZ,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    hour12: false,
  });
}

export function int(n: number): string {
  return Math.round(n).toLocaleString(lang() === 'zh' ? 'zh-CN' : 'en-US');
}

export function fixed(n: number, digits = 2): string {
  return n.toFixed(digits);
}

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/** Delay index classes: the thresholds a traffic officer reads the map by. */
export const DI_STEPS: { from: number; color: string; en: string; zh: string }[] = [
  { from: 0, color: '#2fbf71', en: '< 1.2 free', zh: '< 1.2 畅通' },
  { from: 1.2, color: '#f2c14e', en: '1.2–1.5 slow', zh: '1.2–1.5 缓行' },
  { from: 1.5, color: '#f08a24', en: '1.5–2 congested', zh: '1.5–2 拥堵' },
  { from: 2, color: '#e03e3e', en: '≥ 2 severe', zh: '≥ 2 严重拥堵' },
];
export const NO_DATA_COLOR = '#4b5563';

export function diColor(di: number | null | undefined): string {
  if (di == null || !Number.isFinite(di)) return NO_DATA_COLOR;
  let color = DI_STEPS[0].color;
  for (const step of DI_STEPS) if (di >= step.from) color = step.color;
  return color;
}

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}
