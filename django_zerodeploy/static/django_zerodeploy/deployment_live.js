/* Follows a running deploy on its admin detail page: polls the staff-only progress JSON and
   updates the status, message and step table; reloads the page once the deploy has finished.
   Plain DOM APIs only (textContent, never innerHTML), no framework. */
(function () {
  "use strict";
  var INTERVAL = 2000;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function seconds(value) {
    if (value === null || value === undefined) { return "\u2014"; }
    return Number(value).toFixed(2) + " s";
  }

  function badge(status, label) {
    return el("span", "zd-badge zd-" + status, label);
  }

  function renderSteps(body, steps) {
    while (body.firstChild) { body.removeChild(body.firstChild); }
    if (!steps.length) {
      var empty = el("tr", "zd-empty");
      var cell = el("td", "", "No steps recorded yet.");
      cell.colSpan = 6;
      empty.appendChild(cell);
      body.appendChild(empty);
      return;
    }
    steps.forEach(function (step, index) {
      var row = el("tr", "zd-step zd-step-" + step.status);
      row.appendChild(el("td", "", index + 1));
      var name = el("td");
      name.appendChild(el("strong", "", step.name));
      row.appendChild(name);
      var status = el("td");
      status.appendChild(badge(step.status, step.status_label));
      row.appendChild(status);
      row.appendChild(el("td", "", step.detail));
      row.appendChild(el("td", "zd-num", seconds(step.duration)));
      row.appendChild(el("td", "zd-num", step.returncode === null ? "\u2014" : step.returncode));
      body.appendChild(row);
      if (step.output) {
        var outRow = el("tr", "zd-output-row");
        outRow.appendChild(el("td"));
        var outCell = el("td");
        outCell.colSpan = 5;
        var details = el("details");
        details.open = step.status === "running" || step.status === "failed";
        details.appendChild(el("summary", "", "output of " + step.name));
        details.appendChild(el("pre", "zd-output", step.output));
        outCell.appendChild(details);
        outRow.appendChild(outCell);
        body.appendChild(outRow);
      }
    });
  }

  function render(data) {
    var status = document.getElementById("zd-live-status");
    if (status) {
      status.className = "zd-badge zd-" + data.status;
      status.textContent = data.status_label;
    }
    var sha = document.getElementById("zd-live-sha");
    var subject = document.getElementById("zd-live-subject");
    if (sha && data.target_sha) {
      sha.textContent = data.target_sha.slice(0, 10);
      sha.title = data.target_sha;
      if (subject) { subject.textContent = data.subject; subject.className = ""; }
    }
    var message = document.getElementById("zd-live-message");
    if (message) { message.textContent = data.message || ""; }
    var elapsed = document.getElementById("zd-live-elapsed");
    if (elapsed && data.elapsed !== null) { elapsed.textContent = Math.round(data.elapsed) + " s"; }
    var cancel = document.getElementById("zd-cancel-form");
    if (cancel && data.status !== "queued") { cancel.style.display = "none"; }
    var body = document.getElementById("zd-steps-body");
    if (body) { renderSteps(body, data.steps || []); }
  }

  function start() {
    var root = document.getElementById("zd-live");
    if (!root || root.getAttribute("data-zd-finished") === "true") { return; }
    var url = root.getAttribute("data-zd-progress-url");
    function poll() {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.json();
        })
        .then(function (data) {
          render(data);
          if (data.finished) {
            root.setAttribute("data-zd-finished", "true");
            window.location.reload();
          } else {
            window.setTimeout(poll, INTERVAL);
          }
        })
        .catch(function () { window.setTimeout(poll, INTERVAL * 2); });
    }
    window.setTimeout(poll, INTERVAL);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
