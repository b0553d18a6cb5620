// Chinese messages: live traffic (the collector's in-memory view).
export default {
  'Live traffic': '实时流量',
  'Records since start': '启动以来记录数',
  'Flows held': '内存中的流',
  'Throughput in the window': '窗口内吞吐量',
  'Throughput per second (in ▲ / out ▼)': '每秒吞吐量（入向 ▲ / 出向 ▼）',
  Records: '记录数',
  'Flow size p50 / p99': '流大小 p50 / p99',
  'Duration p50 / p99': '持续时间 p50 / p99',
  'Packet size p50': '包大小 p50',
  'Top sources': '主要源地址',
  'Top sources of {line} (flows held)': '{line} 的主要源地址（内存中的流）',
  'mean over {n} s': '{n} 秒平均',
  'event time {time} {zone}': '事件时间 {time} {zone}',
};
