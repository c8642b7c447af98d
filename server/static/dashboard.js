// SmartMeter dashboard: plain JS over the JSON API and the SSE stream; charts with the vendored uPlot.
"use strict";
(function () {
  const cfg = document.getElementById("config").dataset;
  const meterSel = document.getElementById("meter");
  const $ = (id) => document.getElementById(id);
  const RANGES = { day: [86400, "15m"], week: [7 * 86400, "1h"], month: [31 * 86400, "1h"], year: [366 * 86400, "1d"] };
  let live = null, source = null, history = null, range = "day";
  const liveData = [[], []];

  async function api(path, options) {
    const r = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || r.statusText);
    return body;
  }
  const kwh = (v) => (v === null || v === undefined ? "–" : v.toFixed(2) + " kWh");
  const width = (el) => Math.max(300, el.clientWidth - 10);

  function chart(el, label, color, data) {
    return new uPlot({ width: width(el), height: 240, scales: { x: { time: true } },
      series: [{}, { label: label, stroke: color, width: 1.5, fill: color + "22", spanGaps: false }],
      axes: [{}, { label: label }] }, data, el);
  }

  function startStream() {
    const meter = meterSel.value;
    if (!meter) return;
    if (source) source.close();
    liveData[0].length = 0; liveData[1].length = 0;
    if (!live) live = chart($("live-chart"), "W", "#d9480f", liveData);
    live.setData(liveData);
    const url = "/api/stream?meter=" + encodeURIComponent(meter) + "&interval=" + $("interval").value;
    source = new EventSource(url);
    source.onopen = () => { $("live-status").textContent = "live"; };
    source.onerror = () => { $("live-status").textContent = "reconnecting"; };
    source.addEventListener("power", (ev) => {
      const d = JSON.parse(ev.data);
      liveData[0].push(Date.parse(d.end) / 1000);
      liveData[1].push(d.power_w);
      if (liveData[0].length > 360) { liveData[0].shift(); liveData[1].shift(); }
      live.setData(liveData);
      $("live-power").textContent = d.power_w === null ? "–" : Math.round(d.power_w) + (d.estimated ? " (est.)" : "");
      const n = Number($("live-count").dataset.count) + 1;
      $("live-count").dataset.count = String(n);
      $("live-count").textContent = "· " + n + " intervals";
    });
  }

  async function loadHistory() {
    const meter = meterSel.value;
    if (!meter) return;
    const [seconds, step] = RANGES[range];
    const end = new Date(), start = new Date(end.getTime() - seconds * 1000);
    const d = await api("/api/meters/" + encodeURIComponent(meter) + "/power?step=" + step +
      "&start=" + start.toISOString() + "&end=" + end.toISOString());
    const data = [d.t, d.power_w];
    if (!history) history = chart($("history-chart"), "W", "#1971c2", data); else history.setData(data);
    const known = d.power_w.filter((v) => v !== null).length;
    $("history-info").textContent = known + " of " + d.t.length + " buckets of " + d.step_s + " s with data";
    $("history-chart").dataset.points = String(known);
  }

  async function loadPanels() {
    const meter = meterSel.value;
    if (!meter) return;
    const m = "/api/meters/" + encodeURIComponent(meter);
    const s = await api(m + "/summary");
    $("today").textContent = kwh(s.today_kwh); $("month").textContent = kwh(s.month_kwh);
    $("year").textContent = kwh(s.year_kwh); $("register").textContent = kwh(s.register_kwh);
    const l = await api(m + "/latest");
    $("latest-age").textContent = l.age_s === null ? "no readings" : "latest " + Math.round(l.age_s) + " s ago";
    const ev = await api(m + "/events?start=" + new Date(Date.now() - 31 * 86400e3).toISOString());
    $("events").tBodies[0].replaceChildren(...ev.events.slice(-50).reverse().map((e) =>
      row([e.kind, e.start, e.end || "open", JSON.stringify(e.detail || e.value || "")])));
    const h = await api(m + "/health");
    $("health").replaceChildren(...[["photos", h.photos], ["unreadable", h.unreadable_share === null ? "–" :
      (100 * h.unreadable_share).toFixed(1) + " %"], ["last photo", h.last_photo || "–"], ["to review", h.review_open]]
      .flatMap(([k, v]) => [el("dt", k), el("dd", String(v))]));
    await loadPhoto(m);
    await loadReview(meter);
    drawHeatmap(await api(m + "/heatmap?days=28"));
  }

  function drawHeatmap(h) {
    const c = $("heatmap"), ctx = c.getContext("2d"), left = 80, top = 16;
    const cw = (c.width - left) / 24, ch = (c.height - top) / h.days.length;
    const vals = h.kwh.flat().filter((v) => v !== null), max = Math.max(0.001, ...vals);
    ctx.clearRect(0, 0, c.width, c.height); ctx.font = "10px sans-serif"; ctx.fillStyle = "#444";
    for (let hr = 0; hr < 24; hr += 3) ctx.fillText(String(hr), left + hr * cw, 10);
    h.days.forEach((day, i) => {
      if (i % 4 === 0) { ctx.fillStyle = "#444"; ctx.fillText(day, 0, top + i * ch + ch); }
      h.kwh[i].forEach((v, hr) => {
        ctx.fillStyle = v === null ? "#eee" : "rgba(25, 113, 194, " + (0.08 + 0.92 * v / max).toFixed(3) + ")";
        ctx.fillRect(left + hr * cw, top + i * ch, cw - 1, ch - 1);
      });
    });
    c.dataset.cells = String(vals.length);
  }

  function el(tag, text) { const e = document.createElement(tag); e.textContent = text; return e; }
  function row(cells) { const tr = document.createElement("tr"); cells.forEach((c) => tr.appendChild(el("td", c))); return tr; }

  async function loadPhoto(m) {
    let p;
    try { p = await api(m + "/photo"); } catch (e) { $("photo-info").textContent = e.message; return; }
    const img = new Image();
    img.onload = () => {
      const c = $("photo"), ctx = c.getContext("2d");
      c.width = img.width; c.height = img.height; ctx.drawImage(img, 0, 0);
      ctx.lineWidth = Math.max(2, img.width / 300); ctx.font = Math.max(14, img.width / 40) + "px sans-serif";
      (p.boxes.digits || []).forEach((b, i) => {
        const d = p.digits[i];
        ctx.strokeStyle = d && d[1] >= 0.5 ? "#2f9e44" : "#e03131";
        ctx.strokeRect(b[0], b[1], b[2], b[3]);
        ctx.fillStyle = ctx.strokeStyle;
        if (d) ctx.fillText(d[0] === null ? "?" : d[0].toFixed(1), b[0], b[1] - 4);
      });
      (p.boxes.pointers || []).forEach((b) => { ctx.strokeStyle = "#f08c00"; ctx.strokeRect(b[0], b[1], b[2], b[3]); });
    };
    img.src = p.image;
    $("photo-info").textContent = p.timestamp + " · " + p.status + " · read " + (p.reading || "nothing") +
      (p.reason ? " · " + p.reason : "");
  }

  async function loadReview(meter) {
    const q = await api("/api/review?meter=" + encodeURIComponent(meter));
    $("review").tBodies[0].replaceChildren(...q.items.map((i) => {
      const tr = row([i.key, i.timestamp || "?", i.value_read === null ? "–" : String(i.value_read), i.reason]);
      const td = document.createElement("td");
      if (cfg.canWrite === "true") {
        const input = document.createElement("input"); input.type = "number"; input.step = "0.01";
        const b = el("button", "Save");
        b.onclick = async () => {
          try {
            await api("/api/review/" + encodeURIComponent(i.key), { method: "POST", body: JSON.stringify({ value: Number(input.value) }),
              headers: { "Content-Type": "application/json", "X-CSRF-Token": cfg.csrf } });
            $("review-msg").textContent = ""; loadPanels();
          } catch (e) { $("review-msg").textContent = e.message; }
        };
        td.append(input, b);
      }
      tr.appendChild(td); return tr;
    }));
  }

  document.querySelectorAll("button.range").forEach((b) => b.addEventListener("click", () => {
    document.querySelectorAll("button.range").forEach((x) => x.classList.remove("active"));
    b.classList.add("active"); range = b.dataset.range; loadHistory();
  }));
  function pageLinks() {
    const m = "/meters/" + encodeURIComponent(meterSel.value || "");
    if ($("invoice-link")) $("invoice-link").href = m + "/invoice";
    if ($("setup-link")) $("setup-link").href = m + "/setup";
  }
  meterSel.addEventListener("change", () => { pageLinks(); startStream(); loadHistory(); loadPanels(); });
  pageLinks();
  $("interval").addEventListener("change", startStream);
  startStream(); loadHistory().catch((e) => { $("history-info").textContent = e.message; });
  loadPanels().catch((e) => { $("review-msg").textContent = e.message; });
  setInterval(() => loadPanels().catch(() => {}), 60000);
})();
