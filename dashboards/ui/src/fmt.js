// Number, size, rate and time formatting for dense tables.

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

/** ISO or epoch-ms time → "2026-11-23 15:04:05" (UTC). */
export function time(t) {
  if (t === null || t === undefined || t === '') return '';
  const d = typeof t === 'number' ? new Date(t) : new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, '').replace('Z', '');
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

/** Severity badge HTML. */
export const sev = (s) => `<span class="badge sev-${esc(s)}">${esc(s)}</span>`;
