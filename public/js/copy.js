// Copy buttons: <button data-copy="#id"> copies the text of #id. One listener on the document,
// so buttons that htmx swaps in later work too. Served from /assets (the CSP allows only 'self').
(function () {
  'use strict';
  function selectText(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }
  function done(button, text) {
    var label = button.getAttribute('data-label') || button.textContent;
    button.setAttribute('data-label', label);
    button.textContent = text;
    setTimeout(function () {
      button.textContent = label;
    }, 2000);
  }
  document.addEventListener('click', function (event) {
    var button = event.target instanceof Element ? event.target.closest('button[data-copy]') : null;
    if (!button) return;
    var source = document.querySelector(button.getAttribute('data-copy'));
    if (!source) return;
    var text = source.textContent.trim();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () {
          done(button, 'Copied');
        },
        function () {
          selectText(source);
          done(button, 'Press Ctrl+C');
        },
      );
    } else {
      // Without a secure context there is no clipboard API: select it for the person to copy.
      selectText(source);
      var copied;
      try {
        copied = document.execCommand('copy');
      } catch {
        copied = false;
      }
      done(button, copied ? 'Copied' : 'Press Ctrl+C');
    }
  });
})();
