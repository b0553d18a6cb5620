// Pieces shared by the list pages: filter chips, pager, evidence table.
import { bytes, endpoint, esc, int, proto, time } from '../fmt.js';
import { update } from '../state.js';

/** Multi-select chips bound to a comma-separated hash parameter. */
export function chips(el, name, values, selected) {
  const on = new Set((selected || '').split(',').filter(Boolean));
  el.innerHTML = values.map((v) => `<button class="chip${on.has(v) ? ' on' : ''}" data-chip="${esc(v)}">${esc(v.replace(/_/g, ' '))}</button>`).join('');
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
  el.innerHTML = `<span data-testid="page-info">${total ? `${int(offset + 1)}–${int(to)} of ${int(total)}` : 'nothing found'}</span>
    <button data-dir="-1" ${offset <= 0 ? 'disabled' : ''}>‹ Previous</button>
    <button data-dir="1" ${to >= total ? 'disabled' : ''}>Next ›</button>`;
  el.onclick = (e) => {
    const d = Number(e.target.dataset.dir);
    if (d) update({ offset: Math.max(0, offset + d * limit) || null });
  };
}

/** Evidence flows (records as the probe exported them) as a table, plus the raw JSON. */
export function evidence(list) {
  if (!Array.isArray(list)) return `<pre class="json">${esc(typeof list === 'string' ? list : JSON.stringify(list, null, 2))}</pre>`;
  if (!list.length) return `<div class="empty">No evidence flows attached.</div>`;
  const rows = list
    .map(
      (f) => `<tr><td>${esc(time(f.first))}</td><td>${esc(time(f.last))}</td><td>${esc(f.line ?? '')}</td><td>${esc(f.direction ?? '')}</td>
      <td class="mono">${esc(endpoint(f.src, f.sport))}</td><td class="mono">${esc(endpoint(f.dst, f.dport))}</td><td>${esc(proto(f.proto))}</td>
      <td class="num">${int(f.packets)}</td><td class="num">${bytes(f.bytes)}</td></tr>`,
    )
    .join('');
  return `<div class="scroll"><table data-testid="evidence"><thead><tr><th>First</th><th>Last</th><th>Line</th><th>Dir</th><th>Source</th><th>Destination</th><th>Proto</th><th class="num">Packets</th><th class="num">Bytes</th></tr></thead><tbody>${rows}</tbody></table></div>
    <details style="margin-top:8px"><summary class="muted">Raw evidence JSON (${list.length} records)</summary><pre class="json">${esc(JSON.stringify(list, null, 2))}</pre></details>`;
}

/** A definition grid from [label, value] pairs (values are escaped). */
export function facts(pairs) {
  return `<div class="facts">${pairs.map(([k, v]) => `<div><span>${esc(k)}</span><b>${esc(v === '' || v === null || v === undefined ? '–' : v)}</b></div>`).join('')}</div>`;
}
