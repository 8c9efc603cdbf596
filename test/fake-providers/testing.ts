/**
 * `keyward/testing`: the fake providers and the plugin test kit, for plugin authors. Test a
 * plugin over real HTTP against a fake that speaks its provider's wire format, or build a fake
 * for a new provider on `FakeProvider` / `OpenAiCompatibleFakeProvider`. See plugins/README.md.
 */
export * from './index';
export * from './multipart';
export * from './openai-compatible';
export * from './plugin-test-kit';
