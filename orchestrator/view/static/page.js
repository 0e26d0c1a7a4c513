// Draws every figure of the page with Plotly (shipped with the page or by the dashboard itself) and, when
// the page is live (the dashboard), asks the server for the page's sections again every few seconds and
// redraws what changed: no reload, no other script.
(function () {
  "use strict";
  var config = { responsive: true, displaylogo: false };
  var shown = {};  // section id -> {html, figure} last drawn

  function draw(plot, figure) {
    plot.hidden = false;
    Plotly.react(plot, figure.data || [], figure.layout || {}, config);
  }

  document.querySelectorAll("script.figure").forEach(function (node) {
    var plot = document.getElementById(node.dataset.for);
    var figure = JSON.parse(node.textContent);
    shown[plot.id.slice(5)] = { figure: JSON.stringify(figure) };
    draw(plot, figure);
  });

  var live = document.body.dataset.live;
  if (!live) { return; }
  var every = parseInt(document.body.dataset.refresh, 10) || 3000;
  var state = document.getElementById("live-state");

  function update(page) {
    page.sections.forEach(function (section) {
      var box = document.getElementById("sec-" + section.id);
      if (!box) { return; }
      var last = shown[section.id] || (shown[section.id] = {});
      if (section.html !== last.html) {
        box.querySelector(".body").innerHTML = section.html;
        last.html = section.html;
      }
      var text = section.figure ? JSON.stringify(section.figure) : "";
      if (text !== (last.figure || "")) {
        var plot = box.querySelector(".plot");
        if (section.figure) { draw(plot, section.figure); } else { Plotly.purge(plot); plot.hidden = true; }
        last.figure = text;
      }
    });
    state.textContent = page.stamp;
    state.className = "";
  }

  function tick() {
    var url = live + (live.indexOf("?") < 0 ? "?" : "&") + "format=json";
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) { throw new Error(response.status + " " + response.statusText); }
        return response.json();
      })
      .then(update)
      .catch(function (error) { state.textContent = "live: lost the server (" + error.message + "), retrying"; state.className = "lost"; })
      .then(function () { window.setTimeout(tick, every); });
  }
  window.setTimeout(tick, every);
}());
