// Draws every <canvas data-chart="ID"> from the JSON in <script type="application/json" id="ID">
// (written by autoresponder.charts.series_chart and Django's json_script). Needs the vendored
// Chart.js loaded first. No inline script anywhere: the CSP forbids it.
(function () {
  "use strict";

  var COLOURS = ["#2456d6", "#1f7a46", "#b42318", "#8a5a00", "#6b3fb5", "#0f6e7a"];
  var reducedMotion = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;

  function dataset(series, index) {
    var colour = COLOURS[index % COLOURS.length];
    var isBar = series.kind === "bar";
    return {
      type: isBar ? "bar" : "line",
      label: series.label,
      data: series.data,
      yAxisID: series.axis || "y",
      borderColor: colour,
      backgroundColor: isBar ? colour + "99" : colour,
      borderWidth: isBar ? 0 : 2,
      pointRadius: 0,
      pointHitRadius: 6,
      tension: 0.2,
      order: isBar ? 2 : 1, // lines over bars
    };
  }

  function scales(datasets) {
    var result = { x: { ticks: { maxTicksLimit: 8, autoSkip: true } } };
    var used = {};
    datasets.forEach(function (d) { used[d.yAxisID] = true; });
    Object.keys(used).forEach(function (axis) {
      result[axis] = {
        position: axis === "y1" ? "right" : "left",
        beginAtZero: true,
        ticks: { precision: 0 },
        grid: { drawOnChartArea: axis !== "y1" },
      };
    });
    return result;
  }

  function draw(canvas) {
    if (canvas.chart || typeof window.Chart !== "function") return;
    var source = document.getElementById(canvas.dataset.chart);
    if (!source) return;
    var spec = JSON.parse(source.textContent);
    var datasets = spec.datasets.map(dataset);
    canvas.chart = new window.Chart(canvas, {
      data: { labels: spec.labels, datasets: datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: reducedMotion ? false : { duration: 300 },
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { position: "bottom" } },
        scales: scales(datasets),
      },
    });
  }

  function drawAll(root) {
    (root || document).querySelectorAll("canvas[data-chart]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  // Charts inside content that htmx swaps in (a refreshed report, say).
  document.addEventListener("htmx:afterSettle", function (event) { drawAll(event.target); });
})();
