// The page of `rewriter report`: reads the JSON in #report-data (rewriter/report/html_report.py writes it),
// lays out one page of the graph at a time with dagre and draws it as SVG; every text from the report is
// set with textContent, never parsed as HTML.
"use strict";
// A failure shows on the page (and tells a waiting test why the page never became ready).
window.addEventListener("error", (ev) => {
  document.body.dataset.error = String(ev.message);
  document.body.prepend(Object.assign(document.createElement("p"), {className: "warning",
                                                                     textContent: "page error: " + ev.message}));
});
(function () {
  const started = performance.now();
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const NODE_W = 160, NODE_H = 34, GHOST_W = 150, GHOST_H = 24;
  const SVG = "http://www.w3.org/2000/svg";
  // nodes: [name, op_type, display status, reason, trail decision ids]
  const nodes = data.nodes;
  const byName = new Map(nodes.map((n, i) => [n[0], i]));
  const pageSize = data.page_nodes;
  const pageCount = Math.max(1, Math.ceil(nodes.length / pageSize));
  const pageOf = (i) => Math.floor(i / pageSize);
  const inputs = nodes.map(() => []), outputs = nodes.map(() => []);
  const graphInputs = nodes.map(() => []), graphOutputs = nodes.map(() => []);
  for (const [from, to, tensor] of data.edges) {
    if (from !== null && to !== null) { outputs[from].push([to, tensor]); inputs[to].push([from, tensor]); }
    else if (from === null && to !== null) graphInputs[to].push(tensor);
    else if (from !== null) graphOutputs[from].push(tensor);
  }
  // points: [tensor, role, sqnr_db, reader node ids, config, trail decision ids]
  const pointsOf = nodes.map(() => []);
  data.points.forEach((p, k) => p[3].forEach((i) => pointsOf[i].push(k)));
  const diffOf = new Map(((data.diff || {}).nodes || []).map((d) => [d.node, d]));

  let currentPage = -1, pinned = null, zoom = 1;
  const layouts = new Map();
  let drawn = new Map();  // node id -> its <g> on the current page

  function h(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    return e;
  }
  function s(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }
  function gotoLink(i, text) {
    const a = h("a", {class: "goto", "data-goto": String(i)}, text === undefined ? nodes[i][0] : text);
    return a;
  }
  function clip(text, n) { return text.length > n ? text.slice(0, n - 1) + "\u2026" : text; }

  // ---- header, legend
  document.getElementById("title").textContent = "rewriter audit: " + data.title;
  const header = document.getElementById("header");
  const hd = data.header || {};
  const opts = hd.options || {};
  for (const [k, v] of [["spec", hd.spec], ["preset", hd.preset], ["format", opts.format],
                        ["calibration samples", (hd.calibration || {}).samples],
                        ["activations stored", (hd.activation_storage || {}).value]]) {
    if (v !== undefined && v !== null) header.append(h("span", {}, k + ": ", h("b", {}, v)));
  }
  const counts = {};
  for (const n of nodes) counts[n[2]] = (counts[n[2]] || 0) + 1;
  const legend = document.getElementById("legend");
  for (const [status, label] of Object.entries(data.statuses)) {
    legend.append(h("span", {class: "chip st-" + status}, `${label}: ${counts[status] || 0}`));
  }
  legend.append(h("span", {class: "note"}, `${nodes.length} nodes, ${data.points.length} FakeQuantize`));

  // ---- graph pages
  function layoutPage(p) {
    if (layouts.has(p)) return layouts.get(p);
    const t0 = performance.now();
    const lo = p * pageSize, hi = Math.min(nodes.length, lo + pageSize);
    const g = new dagre.graphlib.Graph();
    g.setGraph({rankdir: "TB", nodesep: 14, ranksep: 26, marginx: 12, marginy: 12});
    g.setDefaultEdgeLabel(() => ({}));
    const ghosts = new Map(), ios = [];
    const here = (i) => i >= lo && i < hi;
    for (let i = lo; i < hi; i++) g.setNode("n" + i, {width: NODE_W, height: NODE_H});
    function ghost(i) {
      if (!ghosts.has(i)) { ghosts.set(i, "g" + i); g.setNode("g" + i, {width: GHOST_W, height: GHOST_H}); }
      return "g" + i;
    }
    for (let i = lo; i < hi; i++) {
      for (const [from] of inputs[i]) g.setEdge(here(from) ? "n" + from : ghost(from), "n" + i);
      for (const [to] of outputs[i]) if (!here(to)) g.setEdge("n" + i, ghost(to));
      for (const t of graphInputs[i]) {
        const id = "in:" + t;
        if (!g.hasNode(id)) { g.setNode(id, {width: GHOST_W, height: GHOST_H}); ios.push([id, "input " + t]); }
        g.setEdge(id, "n" + i);
      }
      for (const t of graphOutputs[i]) {
        const id = "out:" + t;
        g.setNode(id, {width: GHOST_W, height: GHOST_H}); ios.push([id, "output " + t]);
        g.setEdge("n" + i, id);
      }
    }
    dagre.layout(g);
    const result = {lo, hi, ghosts, ios, graph: g, ms: performance.now() - t0};
    layouts.set(p, result);
    return result;
  }

  function drawPage(p) {
    const lay = layoutPage(p);
    const g = lay.graph, size = g.graph();
    const svg = s("svg", {id: "graph-svg", width: size.width * zoom, height: size.height * zoom,
                          viewBox: `0 0 ${size.width} ${size.height}`});
    const defs = s("defs");
    const marker = s("marker", {id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7",
                                markerHeight: "7", orient: "auto-start-reverse"});
    marker.append(s("path", {d: "M 0 0 L 10 5 L 0 10 z", fill: "#777"}));
    defs.append(marker);
    svg.append(defs);
    for (const e of g.edges()) {
      const pts = g.edge(e).points || [];
      if (!pts.length) continue;
      const d = "M " + pts.map((q) => `${q.x.toFixed(1)} ${q.y.toFixed(1)}`).join(" L ");
      svg.append(s("path", {class: "edge", d, "marker-end": "url(#arrow)"}));
    }
    drawn = new Map();
    for (let i = lay.lo; i < lay.hi; i++) {
      const box = g.node("n" + i), n = nodes[i];
      const el = s("g", {class: "node st-" + n[2], "data-node": n[0], "data-index": String(i),
                         transform: `translate(${box.x - NODE_W / 2},${box.y - NODE_H / 2})`});
      el.append(s("rect", {width: NODE_W, height: NODE_H, rx: "5"}));
      const title = s("title");
      title.textContent = `${n[0]} (${n[1]}): ${n[3]}`;
      el.append(title);
      const op = s("text", {x: "8", y: "14", "font-weight": "bold"});
      op.textContent = clip(n[1], 24);
      const name = s("text", {x: "8", y: "27"});
      name.textContent = clip(n[0], 26);
      el.append(op, name);
      svg.append(el);
      drawn.set(i, el);
    }
    for (const [i, id] of lay.ghosts) {
      const box = g.node(id);
      const el = s("g", {class: "ghost", "data-goto": String(i),
                         transform: `translate(${box.x - GHOST_W / 2},${box.y - GHOST_H / 2})`});
      el.append(s("rect", {width: GHOST_W, height: GHOST_H, rx: "11"}));
      const t = s("text", {x: "8", y: "16"});
      t.textContent = clip(`page ${pageOf(i) + 1}: ${nodes[i][0]}`, 24);
      el.append(t);
      svg.append(el);
    }
    for (const [id, label] of lay.ios) {
      const box = g.node(id);
      const el = s("g", {class: "io", transform: `translate(${box.x - GHOST_W / 2},${box.y - GHOST_H / 2})`});
      el.append(s("rect", {width: GHOST_W, height: GHOST_H, rx: "11"}));
      const t = s("text", {x: "8", y: "16"});
      t.textContent = clip(label, 24);
      el.append(t);
      svg.append(el);
    }
    const holder = document.getElementById("graph");
    holder.replaceChildren(svg);
    currentPage = p;
    document.getElementById("page").value = String(p);
    document.getElementById("page-note").textContent = pageCount > 1
      ? `nodes ${lay.lo + 1}-${lay.hi} of ${nodes.length} (${pageSize} a page, in graph order); ` +
        `dashed boxes are neighbours on other pages` : "";
    if (pinned !== null && drawn.has(pinned)) drawn.get(pinned).classList.add("selected");
  }

  function showPage(p) { if (p !== currentPage) drawPage(p); }

  function reveal(i) {
    showPage(pageOf(i));
    const el = drawn.get(i);
    if (!el) return;
    const box = layouts.get(currentPage).graph.node("n" + i);
    const holder = document.getElementById("graph");
    holder.scrollTo({left: Math.max(0, box.x * zoom - holder.clientWidth / 2),
                     top: Math.max(0, box.y * zoom - holder.clientHeight / 2)});
  }

  function select(i) {
    for (const el of document.querySelectorAll(".node.selected")) el.classList.remove("selected");
    pinned = i;
    reveal(i);
    if (drawn.has(i)) drawn.get(i).classList.add("selected");
    showPanel(i);
  }

  // ---- the panel
  function decisionItem(id) {
    const [action, source, loc, detail] = data.decisions[id];
    const li = h("li", {}, h("b", {}, action), " by ", source);
    if (loc && loc !== "<builtin>") li.append(" @ ", h("code", {class: "loc"}, loc));
    if (detail) li.append(h("div", {class: "note"}, detail));
    return li;
  }
  function showPanel(i) {
    const n = nodes[i];
    const panel = document.getElementById("panel");
    const parts = [h("h2", {}, n[0]),
                   h("p", {}, h("b", {}, n[1]), " ", h("span", {class: "chip st-" + n[2]}, data.statuses[n[2]])),
                   h("p", {class: "reason"}, n[3])];
    const diff = diffOf.get(n[0]);
    if (diff) {
      const a = diff.a || {status: "(absent)", reason: ""}, b = diff.b || {status: "(absent)", reason: ""};
      parts.push(h("p", {class: "diff"}, h("b", {}, `on ${data.diff.b}: `), `${b.status}: ${b.reason}`),
                 h("p", {class: "note"}, `on ${data.diff.a}: ${a.status}: ${a.reason}`));
    }
    parts.push(h("h3", {}, "Trail"));
    const ol = h("ol", {class: "trail"});
    for (const id of n[4]) ol.append(decisionItem(id));
    if (!n[4].length) ol.append(h("li", {}, "(no decision)"));
    parts.push(ol);
    if (pointsOf[i].length) {
      parts.push(h("h3", {}, "FakeQuantize read by this node"));
      const table = h("table", {}, h("tr", {}, h("th", {}, "tensor"), h("th", {}, "role"), h("th", {}, "quantizer"),
                                    h("th", {}, "SQNR dB")));
      for (const k of pointsOf[i]) {
        const p = data.points[k];
        table.append(h("tr", {}, h("td", {}, p[0]), h("td", {}, p[1]), h("td", {}, p[4]),
                       h("td", {class: "value"}, p[2] === null ? "-" : typeof p[2] === "string" ? "exact"
                         : p[2].toFixed(1))));
      }
      parts.push(table);
    }
    const near = (list, label) => {
      if (!list.length) return;
      const p = h("p", {}, label + ": ");
      list.forEach(([j, t], k) => { if (k) p.append(", "); p.append(gotoLink(j), ` (${t})`); });
      parts.push(p);
    };
    near(inputs[i], "inputs from");
    near(outputs[i], "outputs to");
    panel.replaceChildren(...parts);
  }

  const graphEl = document.getElementById("graph");
  graphEl.addEventListener("mouseover", (ev) => {
    const el = ev.target.closest("[data-node]");
    if (el) { el.classList.add("hovered"); showPanel(Number(el.dataset.index)); }
  });
  graphEl.addEventListener("mouseout", (ev) => {
    const el = ev.target.closest("[data-node]");
    if (el && !el.contains(ev.relatedTarget)) {
      el.classList.remove("hovered");
      if (pinned !== null) showPanel(pinned);
    }
  });
  document.addEventListener("click", (ev) => {
    const node = ev.target.closest("[data-node]");
    if (node) { select(Number(node.dataset.index)); return; }
    const link = ev.target.closest("[data-goto]");
    if (link) select(Number(link.dataset.goto));
  });

  // ---- tools
  const pageSelect = document.getElementById("page");
  for (let p = 0; p < pageCount; p++) {
    const lo = p * pageSize, hi = Math.min(nodes.length, lo + pageSize);
    pageSelect.append(h("option", {value: String(p)}, `${p + 1} of ${pageCount}: ${clip(nodes[lo] ? nodes[lo][0] : "", 30)}`
                        + (hi - lo > 1 ? " \u2026" : "")));
  }
  pageSelect.addEventListener("change", () => showPage(Number(pageSelect.value)));
  const names = document.getElementById("node-names");
  for (const n of nodes) names.append(h("option", {value: n[0]}));
  document.getElementById("find").addEventListener("change", (ev) => {
    const i = byName.get(ev.target.value.trim());
    if (i !== undefined) select(i);
  });
  function setZoom(z) {
    zoom = Math.min(2, Math.max(0.1, z));
    const svg = document.getElementById("graph-svg");
    const size = layouts.get(currentPage).graph.graph();
    svg.setAttribute("width", size.width * zoom);
    svg.setAttribute("height", size.height * zoom);
  }
  document.getElementById("zoom-in").addEventListener("click", () => setZoom(zoom * 1.25));
  document.getElementById("zoom-out").addEventListener("click", () => setZoom(zoom / 1.25));

  // ---- SQNR, worst first; the unmeasured last
  const sqnr = document.getElementById("sqnr");
  // An exactly representable tensor's SQNR is infinite, written as the text "inf".
  const dB = (v) => {
    const n = v === null ? NaN : typeof v === "string" ? Number(v.replace("inf", "Infinity")) : v;
    return Number.isNaN(n) ? null : n;
  };
  const order = data.points.map((p, k) => k).sort((a, b) => {
    const x = dB(data.points[a][2]), y = dB(data.points[b][2]);
    if (x === null || y === null) return (x === null) - (y === null) || a - b;
    return x === y ? a - b : x < y ? -1 : 1;
  });
  const best = Math.max(1, ...data.points.map((p) => dB(p[2])).filter((v) => Number.isFinite(v)));
  for (const k of order) {
    const [tensor, role, raw, readers] = data.points[k];
    const value = dB(raw);
    const grade = value === null ? "none" : value < 10 ? "bad" : value < 20 ? "fair" : "good";
    const width = value === null ? 0 : Math.max(1, Math.min(100, 100 * value / best));
    const shown = value === null ? "not measured" : Number.isFinite(value) ? value.toFixed(1) + " dB" : "exact";
    const row = h("div", {class: "sqnr-row", "data-tensor": tensor, title: `${tensor} (${role})`},
                  h("span", {class: "name"}, `${tensor} (${role})`),
                  h("div", {class: "bar " + grade, style: `width:${width.toFixed(1)}%`}),
                  h("span", {class: "value"}, shown));
    if (readers.length) row.setAttribute("data-goto", String(readers[0]));
    sqnr.append(row);
  }
  if (!data.points.length) sqnr.append(h("p", {class: "note"}, "no FakeQuantize in this plan"));

  // ---- fidelity, passes, diff: generic renderings of the report's JSON
  function render(value) {
    if (value === null || value === undefined) return h("span", {class: "note"}, "-");
    if (Array.isArray(value)) {
      if (!value.length) return h("span", {class: "note"}, "none");
      if (value.every((v) => v && typeof v === "object" && !Array.isArray(v))) {
        const keys = [...new Set(value.flatMap((v) => Object.keys(v)))];
        const table = h("table", {}, h("tr", {}, ...keys.map((k) => h("th", {}, k))));
        for (const v of value) table.append(h("tr", {}, ...keys.map((k) => h("td", {}, render(v[k])))));
        return table;
      }
      const span = h("span");
      value.forEach((v, k) => { if (k) span.append(", "); span.append(render(v)); });
      return span;
    }
    if (typeof value === "object") {
      const dl = h("dl");
      for (const [k, v] of Object.entries(value)) dl.append(h("dt", {}, k), h("dd", {}, render(v)));
      return dl;
    }
    if (typeof value === "string" && byName.has(value)) return gotoLink(byName.get(value));
    if (typeof value === "number" && !Number.isInteger(value)) return String(Number(value.toPrecision(6)));
    return String(value);
  }
  const fidelity = document.getElementById("fidelity");
  if (data.fidelity) {
    const f = data.fidelity;
    if (f.summary) fidelity.append(h("p", {}, h("b", {}, f.summary)));
    if (f.warning) fidelity.append(h("p", {class: "warning"}, f.warning));
    if (f.note) fidelity.append(h("p", {class: "note"}, f.note));
    if (f.outputs) fidelity.append(render(f.outputs));
    const guard = f.guard;
    fidelity.append(h("h3", {}, "Fidelity guard"));
    fidelity.append(guard ? render(guard) : h("p", {class: "note"}, "not run (the output was above the threshold, " +
                                                   "or the guard was off)"));
    const rest = Object.fromEntries(Object.entries(f).filter(([k]) =>
      !["summary", "warning", "note", "outputs", "guard"].includes(k)));
    fidelity.append(h("h3", {}, "Details"), render(rest));
  } else {
    fidelity.append(h("p", {class: "note"}, "no self-check in this report (an audit, or quantize --no-self-check)"));
  }
  const passes = document.getElementById("passes");
  const passNames = Object.keys(data.passes);
  if (!passNames.length) passes.append(h("p", {class: "note"}, "no pass ran besides the statistics"));
  for (const name of passNames) passes.append(h("h3", {}, name), render(data.passes[name]));
  if (data.control_flow.length) passes.append(h("h3", {}, "control flow"), render(data.control_flow));
  if (data.diff) {
    const d = data.diff;
    document.getElementById("diff-section").hidden = false;
    document.getElementById("diff-title").textContent = `What changes from ${d.a} to ${d.b}`;
    const box = document.getElementById("diff");
    box.append(h("p", {}, `${d.nodes.length} node(s) change; FakeQuantize: ${d.fakequantize.only_a.length} only on ` +
                          `${d.a}, ${d.fakequantize.only_b.length} only on ${d.b}, ` +
                          `${d.fakequantize.changed.length} with another quantizer`));
    const table = h("table", {}, h("tr", {}, h("th", {}, "node"), h("th", {}, "op"), h("th", {}, d.a),
                                    h("th", {}, d.b)));
    for (const n of d.nodes) {
      const a = n.a || {status: "(absent)", reason: ""}, b = n.b || {status: "(absent)", reason: ""};
      const i = byName.get(n.node);
      table.append(h("tr", {}, h("td", {}, i === undefined ? n.node : gotoLink(i)), h("td", {}, n.op_type),
                     h("td", {}, h("span", {class: "chip st-" + a.status}, a.status), " ", a.reason),
                     h("td", {}, h("span", {class: "chip st-" + b.status}, b.status), " ", b.reason)));
    }
    const fq = d.fakequantize;
    box.append(table, h("h3", {}, "FakeQuantize"), render({
      [`only on ${d.a}`]: fq.only_a, [`only on ${d.b}`]: fq.only_b,
      "with another quantizer": fq.changed.map((c) => ({tensor: c.tensor, [d.a]: c.a, [d.b]: c.b}))}));
  }

  drawPage(0);
  document.body.dataset.firstLayoutMs = layouts.get(0).ms.toFixed(0);
  document.body.dataset.renderMs = (performance.now() - started).toFixed(0);
  document.body.dataset.ready = "1";
})();
