// Conveniences only: every page works without this script.
"use strict";
document.documentElement.classList.add("js");
document.addEventListener("DOMContentLoaded", function () {
  // A filter select submits its form when changed.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (sel) {
    sel.addEventListener("change", function () { sel.form.submit(); });
  });
  // "Expand all" opens or closes every body on a timeline.
  document.querySelectorAll("[data-toggle-all]").forEach(function (btn) {
    btn.addEventListener("click", function () {
      var all = document.querySelectorAll("details.body");
      var open = btn.textContent === "Expand all";
      all.forEach(function (d) { d.open = open; });
      btn.textContent = open ? "Collapse all" : "Expand all";
    });
  });
  // A step linked by #anchor is opened and highlighted.
  if (location.hash.length > 1) {
    var step = document.getElementById(location.hash.slice(1));
    if (step) { step.classList.add("target"); }
  }
});
