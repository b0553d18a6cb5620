// Chinese messages: probes (probe health).
export default {
  'rates over the last 5 minutes of reports': '速率按最近 5 分钟的上报计算',
  'Probe spool (not yet acknowledged)': '探针缓存（尚未确认）',
  'Records exported per second': '每秒导出记录数',
  // Probe states.
  reporting: '上报正常',
  late: '上报延迟',
  silent: '无上报',
  'No probe has reported yet.': '尚无探针上报。',
  '{status} · last report {age} ago ({time})': '{status} · 最近上报于 {age} 前（{time}）',
  'Packets/s': '包/秒',
  'Records/s': '记录/秒',
  Drops: '丢弃',
  Spool: '缓存',
  '{n} batches': '{n} 个批次',
  'Lines: {lines} · {n} reports in window': '线路：{lines} · 窗口内上报 {n} 次',
  'Counters ({n})': '计数器（{n}）',
  Counter: '计数器',
  Total: '合计',
  'Per second': '每秒',
};
