// edgetier dashboard: renders the frames the load balancer pushes over
// WebSocket every second. Every string from the server is set as text,
// never as HTML (edge names come from the edges' agents).

const HISTORY = 300; // points (seconds) kept in the charts
const TIER_COLORS = ['#263039', '#2fbf71', '#e6c229', '#f17105', '#d11149'];
const PALETTE = ['#4aa3ff', '#2fbf71', '#e6c229', '#f17105', '#d11149', '#a06cd5', '#00b8a9', '#ff8fab', '#9ccc65', '#ffd166'];
const COMPONENTS = ['cpu', 'memory', 'requests', 'streams', 'response_time', 'bandwidth'];

const $ = (id) => document.getElementById(id);
const fmt = (v, digits = 1) => (Number.isFinite(v) ? v.toFixed(digits) : '–');

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = String(text);
  return e;
}

// ---- charts ---------------------------------------------------------------

Chart.defaults.color = '#7d8b97';
Chart.defaults.borderColor = '#263039';
Chart.defaults.animation = false;
Chart.defaults.font.size = 11;

function lineChart(canvas, datasets, yTitle, max) {
  return new Chart(canvas, {
    type: 'line',
    data: { labels: [], datasets },
    options: {
      responsive: true, maintainAspectRatio: false, parsing: false, normalized: true,
      elements: { point: { radius: 0 }, line: { borderWidth: 1.5, tension: 0.2 } },
      scales: {
        x: { type: 'linear', ticks: { callback: (v) => `${Math.round(v)}s`, maxTicksLimit: 6 } },
        y: { beginAtZero: true, max, title: { display: !!yTitle, text: yTitle } },
      },
      plugins: { legend: { display: true, labels: { boxWidth: 10 } }, tooltip: { enabled: true } },
    },
  });
}

const charts = {
  traffic: lineChart($('c-traffic'), [
    { label: 'requests/s', data: [], borderColor: PALETTE[0] },
    { label: 'streams', data: [], borderColor: PALETTE[1] },
  ]),
  score: lineChart($('c-score'), [], 'score', 100),
  bw: lineChart($('c-bw'), [{ label: 'LB', data: [], borderColor: PALETTE[0] }]),
  share: new Chart($('c-share'), {
    type: 'bar',
    data: { labels: [], datasets: [{ label: 'share %', data: [], backgroundColor: [] }] },
    options: {
      responsive: true, maintainAspectRatio: false, indexAxis: 'y',
      scales: { x: { beginAtZero: true, max: 100 } },
      plugins: { legend: { display: false } },
    },
  }),
};

const start = Date.now();
const seconds = () => (Date.now() - start) / 1000;

function push(dataset, x, y) {
  dataset.data.push({ x, y });
  if (dataset.data.length > HISTORY) dataset.data.shift();
}

function edgeDataset(chart, key, color) {
  let ds = chart.data.datasets.find((d) => d.key === key);
  if (!ds) {
    ds = { key, label: key, data: [], borderColor: color };
    chart.data.datasets.push(ds);
  }
  return ds;
}

function updateCharts(frame) {
  const x = seconds();
  push(charts.traffic.data.datasets[0], x, frame.lb.requests_per_second);
  push(charts.traffic.data.datasets[1], x, frame.lb.streams);
  push(charts.bw.data.datasets[0], x, frame.lb.bandwidth_mbps);

  const live = new Set();
  frame.edges.forEach((e, i) => {
    const key = e.edge || e.upstream;
    live.add(key);
    const color = PALETTE[i % PALETTE.length];
    push(edgeDataset(charts.score, key, color), x, e.tier > 0 ? e.score : null);
    push(edgeDataset(charts.bw, key, color), x, e.throughput_mbps);
  });
  // Edges that left (scale down) leave the charts too.
  for (const chart of [charts.score, charts.bw]) {
    chart.data.datasets = chart.data.datasets.filter((d) => !d.key || live.has(d.key));
    chart.options.plugins.legend.display = chart.data.datasets.length <= 12;
    const min = Math.max(0, x - HISTORY);
    chart.options.scales.x.min = min;
    chart.options.scales.x.max = x;
  }
  charts.traffic.options.scales.x.min = Math.max(0, x - HISTORY);
  charts.traffic.options.scales.x.max = x;

  charts.share.data.labels = frame.edges.map((e) => e.edge || e.upstream);
  charts.share.data.datasets[0].data = frame.edges.map((e) => e.share * 100);
  charts.share.data.datasets[0].backgroundColor = frame.edges.map((e) => TIER_COLORS[e.tier] || TIER_COLORS[0]);
  for (const c of Object.values(charts)) c.update('none');
}

// ---- cards, table, events ---------------------------------------------------

function updateCards(frame) {
  const lb = frame.lb;
  $('g-rps').textContent = fmt(lb.requests_per_second);
  $('g-rpm').textContent = fmt(lb.requests_per_minute, 0);
  $('g-streams').textContent = lb.streams;
  $('g-bw').textContent = `${fmt(lb.bandwidth_mbps, lb.bandwidth_mbps >= 100 ? 0 : 1)} Mbps`;
  $('g-resp').textContent = `${fmt(lb.response_time_seconds * 1000)} ms`;
  $('g-cpu').textContent = `${fmt(lb.cpu_percent)} %`;
  $('g-mem').textContent = `${fmt(lb.memory_percent)} %`;
  const up = frame.edges.filter((e) => e.health === 'ok').length;
  $('g-edges').textContent = `${up} / ${frame.edges.length}`;
  $('pool').textContent = `pool ${frame.pool}`;
  $('updated').textContent = `updated ${new Date(frame.time).toLocaleTimeString()}`;
}

function cell(row, className, text) {
  const td = el('td', className, text);
  row.appendChild(td);
  return td;
}

function edgeRow(e) {
  const tr = el('tr');
  tr.dataset.upstream = e.upstream;
  if (e.stale) tr.classList.add('stale');
  if (e.health === 'down') tr.classList.add('down');
  if (e.ejected) tr.classList.add('ejected');

  const name = cell(tr);
  name.appendChild(el('span', 'edge-name', e.edge || '(no report)'));
  name.appendChild(el('span', 'edge-addr', e.upstream));

  cell(tr).appendChild(el('span', `tier t${e.tier}`, e.tier > 0 ? e.tier : '–'));

  const score = cell(tr);
  const bar = el('span', 'scorebar');
  const fill = el('span');
  fill.style.width = `${Math.min(100, Math.max(0, e.score))}%`;
  fill.style.background = TIER_COLORS[e.tier] || TIER_COLORS[0];
  bar.appendChild(fill);
  score.appendChild(bar);
  score.appendChild(document.createTextNode(fmt(e.score)));

  const comps = cell(tr, 'components');
  const box = el('span', 'comps');
  for (const c of COMPONENTS) {
    const b = el('span');
    const v = e.components ? e.components[c] || 0 : 0;
    b.style.height = `${Math.max(1, (v / 100) * 22)}px`;
    b.title = `${c}: ${fmt(v)}`;
    box.appendChild(b);
  }
  comps.appendChild(box);

  cell(tr, 'num', `${fmt(e.cpu_percent)} %`);
  cell(tr, 'num', `${fmt(e.memory_percent)} %`);
  cell(tr, 'num', fmt(e.requests_per_second));
  cell(tr, 'num', fmt(e.streams, 0));
  cell(tr, 'num', `${fmt(e.response_time_seconds * 1000)} ms`);
  cell(tr, 'num', fmt(e.throughput_mbps));
  tr.appendChild(linkCell(e));
  cell(tr).appendChild(el('span', `badge s-${e.state || 'none'}`, e.state || '–'));
  const health = cell(tr);
  health.appendChild(el('span', `badge h-${e.health}`, e.health));
  // Ejected for its errors: for how much longer; its recent error ratio.
  if (e.ejected) health.appendChild(el('span', 'eject-mark', `${fmt(e.ejected_seconds, 0)} s`));
  if (e.error_ratio > 0) health.appendChild(el('span', 'error-mark', `${fmt(e.error_ratio * 100, 0)} % err`));
  // Slow start: a new or returning edge ramps up to its full share.
  if (e.ramp != null && e.ramp < 1) health.appendChild(el('span', 'ramp-mark', `ramp ${fmt(e.ramp * 100, 0)} %`));
  const age = cell(tr, 'num', e.report_age_seconds == null ? '–' : `${fmt(e.report_age_seconds)} s`);
  if (e.stale && e.report_age_seconds != null) age.appendChild(el('span', 'stale-mark', 'STALE'));
  cell(tr, 'num', `${fmt(e.share * 100, 0)} %`);
  return tr;
}

// linkCell shows the share of its link an edge uses against the link's
// capacity, and FULL while it takes no new viewers for want of headroom.
function linkCell(e) {
  const td = el('td', 'link');
  if (e.link_utilisation == null) {
    td.textContent = '–';
    td.title = 'link capacity unknown';
    return td;
  }
  const bar = el('span', 'scorebar');
  const fill = el('span');
  const pct = Math.min(100, Math.max(0, e.link_utilisation * 100));
  fill.style.width = `${pct}%`;
  fill.style.background = e.link_headroom ? TIER_COLORS[pct < 50 ? 1 : 2] : TIER_COLORS[4];
  bar.appendChild(fill);
  td.appendChild(bar);
  const cap = e.link_capacity_mbps;
  td.appendChild(document.createTextNode(`${fmt(pct, 0)} % of ${cap >= 1000 ? `${fmt(cap / 1000, 1)} Gbps` : `${fmt(cap, 0)} Mbps`}`));
  if (!e.link_headroom) td.appendChild(el('span', 'stale-mark', 'FULL'));
  td.title = `${fmt(pct, 1)} % of ${fmt(cap, 0)} Mbps; ${fmt(e.stream_bytes_per_second * 8 / 1e6, 2)} Mbps per stream`;
  return td;
}

function updateTable(frame) {
  const body = document.querySelector('#edges tbody');
  body.replaceChildren(...frame.edges.map(edgeRow));
  $('no-edges').hidden = frame.edges.length > 0;
}

let lastEventSeq = 0;
function updateEvents(frame) {
  const list = $('events');
  for (const ev of frame.events || []) {
    if (ev.seq <= lastEventSeq) continue;
    lastEventSeq = ev.seq;
    const li = el('li');
    li.appendChild(el('span', 'time', new Date(ev.time).toLocaleTimeString()));
    li.appendChild(el('span', `kind k-${ev.kind}`, ev.kind));
    li.appendChild(el('span', 'upstream', ev.upstream));
    li.appendChild(el('span', 'message', ev.message));
    list.prepend(li);
  }
  while (list.children.length > 200) list.lastChild.remove();
}

function render(frame) {
  updateCards(frame);
  updateTable(frame);
  updateEvents(frame);
  updateCharts(frame);
  window.edgetierLastFrame = frame; // for tests and the curious
}

// ---- connection with backoff --------------------------------------------------

const conn = $('conn');
function setStatus(text, cls) {
  conn.textContent = text;
  conn.className = `pill ${cls}`;
}

let backoff = 500;
function connect() {
  const url = new URL('../ws', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(url);
  ws.onopen = () => {
    backoff = 500;
    setStatus('live', 'pill-ok');
  };
  ws.onmessage = (msg) => {
    try {
      render(JSON.parse(msg.data));
    } catch (err) {
      console.error('bad frame', err);
    }
  };
  ws.onclose = () => {
    const wait = Math.min(backoff, 10000) * (0.8 + Math.random() * 0.4);
    setStatus(`reconnecting in ${Math.ceil(wait / 1000)} s`, 'pill-bad');
    backoff = Math.min(backoff * 2, 10000);
    setTimeout(connect, wait);
  };
}
connect();
