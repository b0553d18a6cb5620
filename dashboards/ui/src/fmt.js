// Number, size, rate and time formatting for dense tables.
import { t } from './i18n.js';

const UNITS = ['', 'k', 'M', 'G', 'T', 'P'];

/** 1234567 → "1.23 M" (SI). */
export function si(n, unit = '') {
  n = Number(n) || 0;
  let i = 0;
  while (Math.abs(n) >= 1000 && i < UNITS.length - 1) {
    n /= 1000;
    i++;
  }
  const s = i === 0 ? String(Math.round(n * 100) / 100) : n.toFixed(n >= 100 ? 0 : n >= 10 ? 1 : 2);
  return `${s}${i || unit ? ' ' : ''}${UNITS[i]}${unit}`;
}

/** Bytes → "12.3 MB". */
export const bytes = (n) => si(n, 'B');
/** Bits per second from bytes per second. */
export const bps = (bytesPerSec) => si(bytesPerSec * 8, 'bit/s');
/** Integer with thin separators. */
export const int = (n) => Number(n || 0).toLocaleString('en-US');

// One time zone for every time shown — tables, headers, chart axes and tooltips, the
// custom-range fields: UTC by default, chosen in the header and kept in this browser.
const TZ_KEY = 'tidegate.timezone';
const BROWSER_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
/** Zones offered (the browser's own first after UTC). */
export const ZONES = [...new Set(['UTC', BROWSER_ZONE, 'Asia/Hong_Kong', 'Asia/Shanghai', 'Asia/Singapore', 'Asia/Tokyo', 'Europe/London', 'Europe/Berlin', 'America/New_York'])];
let zone = (() => {
  try {
    const z = localStorage.getItem(TZ_KEY);
    if (z) new Intl.DateTimeFormat('en', { timeZone: z });
    return z || 'UTC';
  } catch {
    return 'UTC';
  }
})();
let wall = null;

/** The zone every time is shown in. */
export const tz = () => zone;

/** Chooses the zone (kept in this browser). */
export function setZone(z) {
  new Intl.DateTimeFormat('en', { timeZone: z }); // throws on an unknown zone
  zone = z;
  wall = null;
  try {
    localStorage.setItem(TZ_KEY, z);
  } catch {
    /* private mode: for this page only */
  }
}

/** Epoch ms → "YYYY-MM-DD HH:MM:SS" in the zone. */
function wallTime(ms) {
  wall ??= new Intl.DateTimeFormat('sv-SE', { timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
  return wall.format(new Date(ms));
}

/** A time as given to `time` (epoch ms, a stored "YYYY-MM-DD HH:MM:SS.fff" in UTC, or ISO) → epoch ms. */
export function toMs(t) {
  if (typeof t === 'number') return t;
  const s = String(t ?? '');
  if (/[zZ]|[+-]\d\d:?\d\d$/.test(s)) {
    const d = Date.parse(s);
    return Number.isNaN(d) ? null : d;
  }
  return epochMs(s);
}

/** A time → "2026-11-23 15:04:05" in the chosen zone. */
export function time(t) {
  if (t === null || t === undefined || t === '') return '';
  const ms = toMs(t);
  return ms === null ? String(t) : wallTime(ms);
}

/** The zone's offset from UTC at `ms`, in ms. */
function offsetAt(ms) {
  const m = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)/.exec(wallTime(ms));
  return Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]) - Math.floor(ms / 1000) * 1000;
}

/** Epoch ms → the value of a datetime-local field ("YYYY-MM-DDTHH:MM:SS") in the zone. */
export const toField = (ms) => wallTime(ms).replace(' ', 'T');

/** A datetime-local value read in the zone → epoch ms (NaN when it is not one). */
export function fromField(v) {
  const m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d)(?::(\d\d))?/.exec(v || '');
  if (!m) return NaN;
  const guess = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] ?? 0));
  const first = guess - offsetAt(guess);
  return guess - offsetAt(first);
}

/** An axis label for `ms` on an axis spanning `spanMs`, in the zone. */
export function axisTime(ms, spanMs) {
  const w = wallTime(ms);
  if (spanMs <= 15 * 60e3) return w.slice(11, 19);
  if (spanMs <= 2 * 86400e3) return w.slice(11, 16);
  if (spanMs <= 90 * 86400e3) return `${w.slice(5, 10)} ${w.slice(11, 16)}`;
  return w.slice(0, 10);
}

/**
 * A stored time ("2021-04-28 10:30:21.123456789", UTC) → epoch milliseconds, rounded
 * down (`up`: rounded up); null when it is not one.
 */
export function epochMs(t, up = false) {
  const m = /^(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d+))?/.exec(String(t ?? ''));
  if (!m) return null;
  const frac = (m[7] ?? '').padEnd(9, '0');
  const ms = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]) + Number(frac.slice(0, 3));
  return up && Number(frac.slice(3)) > 0 ? ms + 1 : ms;
}

/** Bucket width in seconds → "1 min", "6 h", "30 d". */
export function step(sec) {
  if (sec % 86400 === 0) return `${sec / 86400} d`;
  if (sec % 3600 === 0) return `${sec / 3600} h`;
  if (sec % 60 === 0) return `${sec / 60} min`;
  return `${sec} s`;
}

/** Seconds → "3m 12s". */
export function age(sec) {
  sec = Math.max(0, Math.round(sec));
  if (sec < 60) return `${sec}s`;
  if (sec < 3600) return `${Math.floor(sec / 60)}m ${sec % 60}s`;
  if (sec < 86400) return `${Math.floor(sec / 3600)}h ${Math.floor((sec % 3600) / 60)}m`;
  return `${Math.floor(sec / 86400)}d ${Math.floor((sec % 86400) / 3600)}h`;
}

const PROTOS = { 1: 'ICMP', 6: 'TCP', 17: 'UDP', 47: 'GRE', 50: 'ESP', 58: 'ICMPv6', 132: 'SCTP' };
/** Protocol number → name. */
export const proto = (p) => PROTOS[p] ?? String(p);

/** Escapes text for HTML. */
export function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

/** "a.b.c.d" + port, bracketing IPv6. */
export function endpoint(ip, port) {
  if (port === undefined || port === null) return ip;
  return ip && ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** A severity's name in the current language. */
export const sevLabel = (s) => ({ critical: t('critical'), high: t('high'), medium: t('medium'), low: t('low'), info: t('info') })[s] ?? s;

/** Severity badge HTML. */
export const sev = (s) => `<span class="badge sev-${esc(s)}">${esc(sevLabel(s))}</span>`;
