// den: copy buttons. Anything with data-copy="<id>" copies that element's
// text (or an input's value) and says so, for sighted and screen-reader users.
(function () {
  "use strict";

  function announce(text) {
    var region = document.getElementById("live-region");
    if (region) { region.textContent = ""; region.textContent = text; }
  }

  function textOf(element) {
    return "value" in element && element.tagName !== "BUTTON" ? element.value : element.textContent;
  }

  function fallbackCopy(element) {
    var selection = window.getSelection();
    var range = document.createRange();
    range.selectNodeContents(element);
    selection.removeAllRanges();
    selection.addRange(range);
    if (element.select) { element.select(); }
    return document.execCommand && document.execCommand("copy");
  }

  // Polling panels (data-poll-visible-only) ask nothing while the tab is
  // hidden. Here, not in an hx-trigger filter: htmx evaluates those as
  // code, which the Content-Security-Policy forbids (no unsafe-eval).
  document.addEventListener("htmx:beforeRequest", function (event) {
    var element = event.detail && event.detail.elt;
    if (element && element.hasAttribute("data-poll-visible-only") &&
        document.visibilityState !== "visible") {
      event.preventDefault();
    }
  });

  // "Go back" links on error pages: back in history, or to the dashboard
  // (their href) when there is none. A script, not a javascript: URL, which
  // the Content-Security-Policy forbids.
  document.addEventListener("click", function (event) {
    var link = event.target.closest("[data-history-back]");
    if (link && window.history.length > 1) {
      event.preventDefault();
      window.history.back();
    }
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) { return; }
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) { return; }
    var label = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", label);
    function done(ok) {
      button.textContent = ok ? "Copied" : "Press Ctrl+C";
      if (ok) { button.setAttribute("data-copied", ""); }
      announce(ok ? "Copied to the clipboard" : "Selected; press Ctrl+C to copy");
      window.setTimeout(function () {
        button.textContent = label;
        button.removeAttribute("data-copied");
      }, 2000);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(textOf(source)).then(
        function () { done(true); },
        function () { done(fallbackCopy(source)); }
      );
    } else {
      done(fallbackCopy(source));
    }
  });
})();
