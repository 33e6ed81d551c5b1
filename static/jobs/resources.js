/* The job page's resource card: the job's CPU (cores), memory and disk (MiB) over time, from the
samples the worker takes of its cgroup (jobs/execution/sampler.py).

The page's socket (job.js) hands each {"type": "samples"} frame over as a "dx:samples" event: the
first frame holds every stored sample and the instance type's limits, later ones the new samples,
and a "note" says why there are none. A finished job's samples come from the database the same way,
so the chart stays after the job ends. Drawn with uPlot (static/vendor/uplot), one small chart per
figure; a limit shows as a dashed line once the figure comes within a third of it.
*/
(function () {
  "use strict";

  const card = document.getElementById("resources-card");
  if (!card || !window.uPlot) return;
  const chartsBox = document.getElementById("resources-charts");
  const noteBox = document.getElementById("resources-note");
  const style = getComputedStyle(document.documentElement);
  const muted = style.getPropertyValue("--muted").trim() || "#6b7280";
  const grid = style.getPropertyValue("--border").trim() || "#e3e6ee";

  function mib(value) {
    if (value >= 1024) return `${(value / 1024).toFixed(value >= 10240 ? 0 : 1)} GiB`;
    return `${value.toFixed(value < 10 ? 1 : 0)} MiB`;
  }
  function cores(value) {
    const text = Number.isInteger(value) ? String(value) : value.toFixed(value < 10 ? 2 : 1);
    return `${text} core${value === 1 ? "" : "s"}`;
  }
  const SERIES = [
    { key: "cpu", column: 1, limit: "cpus", color: "#4f46e5", format: cores, floor: 0.1 },
    { key: "memory", column: 2, limit: "memory_mb", color: "#0891b2", format: mib, floor: 1 },
    { key: "disk", column: 3, limit: "disk_mb", color: "#b45309", format: mib, floor: 1 },
  ];

  const times = [];                      // seconds since the epoch
  const values = { cpu: [], memory: [], disk: [] };
  const plots = {};
  let limits = null;
  let lastAt = 0;
  let drawPending = false;
  let draws = 0;

  function peak(key) {
    let top = 0;
    for (const v of values[key]) if (v !== null && v > top) top = v;
    return top;
  }

  function limitShown(series) {
    const limit = limits && limits[series.limit];
    return limit && peak(series.key) * 3 >= limit ? limit : null;
  }

  function makePlot(series) {
    const box = chartsBox.querySelector(`[data-series="${series.key}"] .resource-plot`);
    const options = {
      width: Math.max(160, box.clientWidth),
      height: 100,
      legend: { show: false },
      cursor: { y: false, points: { size: 5 } },
      scales: {
        x: { time: true, range: (u, min, max) => (min === max ? [min - 1, max + 1] : [min, max]) },
        y: { range: () => [0, Math.max(series.floor, peak(series.key) * 1.15, (limitShown(series) || 0) * 1.08)] },
      },
      axes: [
        {
          stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { show: false }, size: 24, font: "11px system-ui", space: 70,
          values: (u, ticks) => ticks.map((t) => new Date(t * 1000).toTimeString().slice(0, 8)),
        },
        {
          stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { show: false }, size: 52, font: "11px system-ui", space: 24,
          values: (u, ticks) => ticks.map((t) => (series.key === "cpu" ? String(+t.toFixed(2)) : mib(t).replace(".0 ", " "))),
        },
      ],
      series: [
        {},
        { label: series.key, stroke: series.color, width: 1.5, fill: `${series.color}1f`, points: { show: false } },
      ],
      hooks: {
        draw: [(u) => {
          const limit = limitShown(series);
          if (!limit) return;
          const ctx = u.ctx;
          const y = Math.round(u.valToPos(limit, "y", true));
          ctx.save();
          ctx.strokeStyle = "#dc2626";
          ctx.setLineDash([5, 4]);
          ctx.lineWidth = devicePixelRatio;
          ctx.beginPath();
          ctx.moveTo(u.bbox.left, y);
          ctx.lineTo(u.bbox.left + u.bbox.width, y);
          ctx.stroke();
          ctx.restore();
        }],
      },
    };
    return new uPlot(options, [times, values[series.key]], box);
  }

  function latest(series) {
    const column = values[series.key];
    for (let i = column.length - 1; i >= 0; i--) if (column[i] !== null) return series.format(column[i]);
    return "—";
  }

  function range(series) {
    const limit = limits && limits[series.limit];
    return `peak ${series.format(peak(series.key))}` + (limit ? ` · limit ${series.format(limit)}` : "");
  }

  function draw() {
    drawPending = false;
    if (!times.length) return;
    chartsBox.hidden = false;
    noteBox.hidden = true;
    for (const series of SERIES) {
      if (!plots[series.key]) plots[series.key] = makePlot(series);
      else plots[series.key].setData([times, values[series.key]]);
      chartsBox.querySelector(`[data-now="${series.key}"]`).textContent = latest(series);
      chartsBox.querySelector(`[data-range="${series.key}"]`).textContent = range(series);
    }
    draws += 1;
  }

  function schedule() {
    if (!drawPending) {
      drawPending = true;
      requestAnimationFrame(draw);
    }
  }

  document.addEventListener("dx:samples", (event) => {
    const frame = Array.isArray(event.detail) ? { samples: event.detail } : event.detail || {};
    if (frame.limits) limits = frame.limits;
    for (const sample of frame.samples || []) {
      if (sample[0] <= lastAt) continue;   // held already (a reconnect sends them all again)
      lastAt = sample[0];
      times.push(sample[0] / 1000);
      for (const series of SERIES) values[series.key].push(sample[series.column]);
    }
    if (times.length) schedule();
    else if (frame.note) noteBox.textContent = frame.note;
  });

  window.addEventListener("resize", () => {
    for (const series of SERIES) {
      const plot = plots[series.key];
      if (plot) plot.setSize({ width: Math.max(160, plot.root.parentNode.clientWidth), height: 100 });
    }
  });

  // For tests: what the chart holds and how often it was drawn.
  window.dxResources = { points: () => times.length, draws: () => draws, note: () => noteBox.textContent };
})();
