import * as path from 'node:path';
import { loadPlugins, PluginConflictError } from './plugin-loader';

const root = path.resolve(__dirname, '../..');
const fixtures = path.join(root, 'test/fixtures/plugins');
const builtInDir = path.join(root, 'plugins');

describe('loadPlugins', () => {
  it('loads the four built-ins', () => {
    const sut = loadPlugins({ builtInDir, extra: [], keywardVersion: '0.1.0' });
    expect(sut.failed).toEqual([]);
    expect(sut.loaded.map((p) => p.manifest.id).sort()).toEqual(['anthropic', 'groq', 'openai', 'openrouter']);
    for (const { plugin, manifest } of sut.loaded) expect(plugin.config.id).toBe(manifest.id);
  });

  it('reports each broken plugin by name and reason while the others load', () => {
    const extra = ['bad-manifest', 'missing-entry', 'incompatible', 'throwing', 'example-llm', 'no-such-plugin'].map(
      (name) => path.join(fixtures, name),
    );
    const sut = loadPlugins({ builtInDir, extra, keywardVersion: '0.1.0' });

    expect(sut.loaded.map((p) => p.manifest.id).sort()).toEqual([
      'anthropic',
      'example-llm',
      'groq',
      'openai',
      'openrouter',
    ]);
    const reasons = Object.fromEntries(sut.failed.map((f) => [f.id, f.reason]));
    expect(reasons['bad-manifest']).toMatch(
      /bad manifest: .*unknown keys hooks.*id must match.*version must be a semver/,
    );
    expect(reasons['missing-entry']).toMatch(/missing entry: lib\/plugin/);
    expect(reasons.incompatible).toMatch(/incompatible: it needs Keyward \^9\.0\.0, this is Keyward 0\.1\.0/);
    expect(reasons.throwing).toMatch(/createPlugin\(\) threw: THROWING_PLUGIN_API_BASE is not configured/);
    expect(reasons[path.join(fixtures, 'no-such-plugin')]).toMatch(/not found/);
    expect(sut.failed.every((f) => !f.builtIn)).toBe(true);
  });

  it('refuses to start when two plugins claim one id, naming both', () => {
    const duplicate = path.join(fixtures, 'duplicate-openai');
    expect(() => loadPlugins({ builtInDir, extra: [duplicate], keywardVersion: '0.1.0' })).toThrow(PluginConflictError);
    expect(() => loadPlugins({ builtInDir, extra: [duplicate], keywardVersion: '0.1.0' })).toThrow(
      new RegExp(`"openai": .*plugins/openai and .*duplicate-openai`),
    );
  });

  it('checks the Keyward version against every range', () => {
    const sut = loadPlugins({ builtInDir, extra: [], keywardVersion: '1.0.0' });
    expect(sut.loaded).toEqual([]);
    expect(sut.failed).toHaveLength(4);
    expect(sut.failed[0].reason).toMatch(/incompatible/);
  });
});
