// The collector's own health: spool, ClickHouse, detection lag, alert queue, webhook
// outbox — and every metric it exposes; live.
import { get } from '../api.js';
import { age, bytes, esc, int, time, tz } from '../fmt.js';
import { t } from '../i18n.js';

export async function render(ctx) {
  ctx.el.innerHTML = `
    <h1>${t('Collector health')} <span class="sub" id="co-version"></span></h1>
    <div class="kpis">
      <div class="kpi"><div class="label">${t('Spool: batches waiting')}</div><div class="value" data-testid="co-spool-batches">–</div><div class="hint" id="co-spool-bytes"></div></div>
      <div class="kpi"><div class="label">ClickHouse</div><div class="value" data-testid="co-clickhouse">–</div><div class="hint" id="co-insert"></div></div>
      <div class="kpi"><div class="label">${t('Records stored')}</div><div class="value" data-testid="co-records">–</div><div class="hint" id="co-dead"></div></div>
      <div class="kpi"><div class="label">${t('Detection lag')}</div><div class="value" data-testid="co-lag">–</div><div class="hint" id="co-detect"></div></div>
      <div class="kpi"><div class="label">${t('Alert states waiting')}</div><div class="value" data-testid="co-store">–</div><div class="hint" id="co-outbox"></div></div>
    </div>
    <div class="panel"><h2>${t('Every metric')}</h2><div class="scroll" style="max-height:none"><table id="co-metrics"><thead><tr><th>${t('Metric')}</th><th>${t('Labels')}</th><th class="num">${t('Value')}</th></tr></thead><tbody></tbody></table></div></div>`;
  const refresh = async (c) => {
    const h = await get('collector');
    if (!c.isCurrent()) return;
    draw(c, h);
  };
  await refresh(ctx);
  // Health is about now, whatever range is selected: always refreshed.
  return refresh;
}

const set = (el, v, text) => {
  el.textContent = text;
  el.dataset.value = v === null || v === undefined ? '' : String(v);
};

function draw(ctx, h) {
  const $ = (s) => ctx.el.querySelector(s);
  $('#co-version').textContent = t('version {v} · up {age}', { v: h.version, age: age(h.uptime_secs) });
  set($('[data-testid=co-spool-batches]'), h.spool.pending_batches, int(h.spool.pending_batches));
  $('#co-spool-bytes').textContent = t('{b} in the spool', { b: bytes(h.spool.bytes ?? 0) });
  const down = h.clickhouse.down;
  const ch = $('[data-testid=co-clickhouse]');
  set(ch, down === null ? '' : down ? 'down' : 'up', down === null ? '–' : down ? t('failing inserts') : t('taking inserts'));
  ch.classList.toggle('bad', !!down);
  const mean = h.clickhouse.insert_seconds_mean != null ? t(' · insert {ms} ms mean', { ms: (h.clickhouse.insert_seconds_mean * 1000).toFixed(1) }) : '';
  $('#co-insert').textContent = t('schema {v}{mean} · {n} retries', { v: h.clickhouse.schema_version ?? '–', mean, n: int(h.clickhouse.insert_retries) });
  // Collector-wide volume is null for a user restricted to some lines.
  const count = (v) => (v === null || v === undefined ? '–' : int(v));
  set($('[data-testid=co-records]'), h.clickhouse.records_committed, count(h.clickhouse.records_committed));
  $('#co-dead').textContent = t('{b} batches · {d} dead letters', { b: count(h.clickhouse.batches_committed), d: int(h.clickhouse.dead_letters) });
  const lag = h.detection.event_time_lag_secs;
  set($('[data-testid=co-lag]'), lag, lag == null ? t('no records yet') : age(lag));
  const et = h.detection.event_time_secs;
  const event = et ? t('event time {time} {zone} (a replay lags by its age) · ', { time: time(et * 1000), zone: tz() }) : '';
  $('#co-detect').textContent = t('{event}{n} records seen · {e} sink errors', { event, n: count(h.detection.records), e: int(h.detection.sink_errors) });
  set($('[data-testid=co-store]'), h.detection.alert_store_pending, int(h.detection.alert_store_pending));
  $('#co-outbox').textContent = h.webhook.outbox == null ? t('no webhook') : t('webhook outbox {o} · delivered {d}', { o: int(h.webhook.outbox), d: count(h.webhook.delivered) });
  $('#co-metrics tbody').innerHTML = h.metrics
    .map((m) => `<tr data-metric="${esc(m.name)}"><td class="mono" translate="no">${esc(m.name)}</td><td class="mono muted" translate="no">${esc(m.labels)}</td><td class="num">${esc(Number.isInteger(m.value) ? int(m.value) : m.value.toPrecision(6))}</td></tr>`)
    .join('');
}
