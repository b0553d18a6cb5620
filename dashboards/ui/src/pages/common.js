// Pieces shared by the list pages: filter chips, pager, evidence table.
import { get, url } from '../api.js';
import { bytes, endpoint, esc, int, proto, time } from '../fmt.js';
import { link, update, can } from '../state.js';
import { lang, t } from '../i18n.js';

/** Multi-select chips bound to a comma-separated hash parameter; `label` names a value. */
export function chips(el, name, values, selected, label = (v) => v.replace(/_/g, ' ')) {
  const on = new Set((selected || '').split(',').filter(Boolean));
  el.innerHTML = values.map((v) => `<button class="chip${on.has(v) ? ' on' : ''}" data-chip="${esc(v)}">${esc(label(v))}</button>`).join('');
  el.addEventListener('click', (e) => {
    const v = e.target.dataset.chip;
    if (!v) return;
    on.has(v) ? on.delete(v) : on.add(v);
    update({ [name]: [...on].join(','), offset: null });
  });
}

/** "1–50 of 123" with previous/next buttons bound to the offset parameter. */
export function pager(el, total, limit, offset) {
  const to = Math.min(total, offset + limit);
  el.innerHTML = `<span data-testid="page-info">${total ? t('{from}–{to} of {total}', { from: int(offset + 1), to: int(to), total: int(total) }) : t('nothing found')}</span>
    <button data-dir="-1" ${offset <= 0 ? 'disabled' : ''}>${t('‹ Previous')}</button>
    <button data-dir="1" ${to >= total ? 'disabled' : ''}>${t('Next ›')}</button>`;
  el.onclick = (e) => {
    const d = Number(e.target.dataset.dir);
    if (d) update({ offset: Math.max(0, offset + d * limit) || null });
  };
}

/**
 * Sets `el` to download links of the view `path` with query `q` (its filters and range):
 * every matching row (up to 100 000) as CSV or JSON.
 */
export function exportLinks(el, path, q) {
  const name = path.replace(/\W/g, '-');
  if (!can('analyst')) {
    el.innerHTML = `<span class="muted" title="${esc(t('Exports need the analyst role'))}">${t('Export: analysts only')}</span>`;
    return;
  }
  el.innerHTML = `${t('Export')} <a href="${esc(url(path, { ...q, format: 'csv' }))}" download data-testid="export-csv">CSV</a> · <a href="${esc(url(path, { ...q, format: 'json' }))}" download data-testid="export-json">JSON</a>`;
  el.dataset.view = name;
}

/** Shows number `v` formatted by `f`, with the exact value in `data-value` and the title. */
export function setNum(el, v, f) {
  el.textContent = f(v);
  el.dataset.value = String(v);
  el.title = int(v);
}

/** Whether `s` is one address (not "3712 sources"). */
export const isAddr = (s) => typeof s === 'string' && /^[0-9a-fA-F:.]+$/.test(s) && (s.includes('.') || s.includes(':'));

/**
 * An address as a pivot: a link to the flow search for it (in the current time range and
 * line, `gp`); anything else (a description like "3712 sources") as text.
 */
export function ipLink(ip, gp = {}, port) {
  const text = esc(port === undefined || port === null ? ip : endpoint(ip, port));
  if (!isAddr(ip)) return esc(endpointText(ip));
  return `<a class="pivot" href="${link('flows', { ...gp, ip })}" data-ip="${esc(ip)}" title="${esc(t('flows of {ip}', { ip }))}">${text}</a>`;
}

/** Evidence flows (records as the probe exported them) as a table, plus the raw JSON. */
export function evidence(list, gp = {}) {
  if (!Array.isArray(list)) return `<pre class="json" translate="no">${esc(typeof list === 'string' ? list : JSON.stringify(list, null, 2))}</pre>`;
  if (!list.length) return `<div class="empty">${t('No evidence flows attached.')}</div>`;
  const rows = list
    .map(
      (f) => `<tr><td>${esc(time(f.first))}</td><td>${esc(time(f.last))}</td><td translate="no">${esc(f.line ?? '')}</td><td>${esc(dirLabel(f.direction))}</td>
      <td class="mono">${ipLink(f.src, gp, f.sport)}</td><td class="mono">${ipLink(f.dst, gp, f.dport)}</td><td>${esc(proto(f.proto))}</td>
      <td class="num">${int(f.packets)}</td><td class="num">${bytes(f.bytes)}</td></tr>`,
    )
    .join('');
  return `<div class="scroll"><table data-testid="evidence"><thead><tr><th>${t('First')}</th><th>${t('Last')}</th><th>${t('Line')}</th><th>${t('Dir')}</th><th>${t('Source')}</th><th>${t('Destination')}</th><th>${t('Proto')}</th><th class="num">${t('Packets')}</th><th class="num">${t('Bytes')}</th></tr></thead><tbody>${rows}</tbody></table></div>
    <details style="margin-top:8px"><summary class="muted">${t('Raw evidence JSON ({n} records)', { n: list.length })}</summary><pre class="json" translate="no">${esc(JSON.stringify(list, null, 2))}</pre></details>`;
}

/**
 * A detector's description of many endpoints ("37669 sources", "at least 2 hosts") in the
 * current language; anything else (an address) as it is.
 */
export function endpointText(s) {
  const m = /^(at least )?(\d+) (sources|hosts|reflectors|resolvers)$/.exec(String(s ?? ''));
  if (!m) return s ?? '';
  const n = int(Number(m[2]));
  const texts = m[1]
    ? { sources: t('at least {n} sources', { n }), hosts: t('at least {n} hosts', { n }), reflectors: t('at least {n} reflectors', { n }), resolvers: t('at least {n} resolvers', { n }) }
    : { sources: t('{n} sources', { n }), hosts: t('{n} hosts', { n }), reflectors: t('{n} reflectors', { n }), resolvers: t('{n} resolvers', { n }) };
  return texts[m[3]];
}

/**
 * A finding's description: in English the detector's or policy's own sentence; in another
 * language a sentence made from the finding's fields (`summary`, HTML), with the original
 * sentence one click away.
 */
export function described(original, summary) {
  if (lang() === 'en') return `<span translate="no">${esc(original)}</span>`;
  return `${summary} <details class="original"><summary class="muted">${t('Original text')}</summary><span translate="no">${esc(original)}</span></details>`;
}

/** A direction's label. */
export const dirLabel = (d) => ({ ingress: t('ingress'), egress: t('egress') })[d] ?? d ?? '';

/** A definition grid from [label, value] pairs (values are escaped). */
export function facts(pairs) {
  return `<div class="facts">${pairs.map(([k, v]) => `<div><span>${esc(k)}</span><b translate="no">${esc(v === '' || v === null || v === undefined ? '–' : v)}</b></div>`).join('')}</div>`;
}

/**
 * The evidence badge of a finding: whether its logged states are proven by the newest
 * signed checkpoint of the evidence log, with its bundle to download. Nothing when the
 * collector keeps no evidence log.
 */
export async function evidenceBadge(el, id) {
  // A placeholder of the badge's height while the log is checked: the links below it do
  // not move under the reader's pointer when the answer arrives.
  el.innerHTML = `<div class="evidence-badge pending" data-testid="evidence-checking"><span>… ${esc(t('Checking the evidence log'))}</span></div>`;
  let st;
  try {
    st = await get(`evidence/status/${encodeURIComponent(id)}`);
  } catch (e) {
    el.innerHTML = '';
    if (e.status === 404) return;
    throw e;
  }
  const bundle = `/api/v1/evidence/bundle/${encodeURIComponent(id)}`;
  const text = {
    verified: t('Verified in the evidence log: {n} state(s), entries {entries}, proven by the checkpoint of {size} entries signed {time} ({origin})', {
      n: int(st.proven),
      entries: st.indexes?.map((i) => '#' + i).join(', '),
      size: int(st.checkpoint_size),
      time: time(st.checkpoint_time_ns / 1e6),
      origin: st.origin,
    }),
    pending_checkpoint: t('Logged ({n} state(s)); proven at the next checkpoint', { n: int(st.logged) }),
    not_logged: t('Not in the evidence log'),
    failed: t('Evidence check FAILED: {reason}', { reason: st.reason }),
  }[st.status] ?? st.status;
  const cls = { verified: 'ok', pending_checkpoint: 'warn', not_logged: 'warn', failed: 'bad' }[st.status] ?? 'warn';
  el.innerHTML = `<div class="evidence-badge ${cls}" data-testid="evidence-badge" data-status="${esc(st.status)}">
      <span>${st.status === 'verified' ? '✓' : st.status === 'failed' ? '✗' : '…'} ${esc(text)}</span>
      ${st.logged ? `<a href="${bundle}" download data-testid="evidence-bundle">${t('Download evidence bundle')}</a>` : ''}
    </div>`;
}
