// Classic script, loaded before the page's modules: it runs even where the
// modules are refused (Chromium on file://, or a browser without module
// support), so the page says why instead of sitting still. A file of its
// own rather than inline code, so the page's Content-Security-Policy can
// forbid inline scripts.
function odinModulesRefused() {
  document.getElementById('module-help').hidden = false;
  document.getElementById('conn').dataset.state = 'stopped';
  document.getElementById('conn-text').textContent = 'scripts blocked';
}

// A script that fails to load fires `error` on its element, which does not
// bubble: listen on the window in the capture phase.
window.addEventListener(
  'error',
  (event) => {
    const el = event.target;
    if (el instanceof HTMLScriptElement && el.type === 'module') {
      if (document.readyState === 'loading') {
        document.addEventListener('DOMContentLoaded', odinModulesRefused, { once: true });
      } else {
        odinModulesRefused();
      }
    }
  },
  true,
);
