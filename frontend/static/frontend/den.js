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
