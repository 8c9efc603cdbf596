import { hasUsageObject } from './usage';

describe('hasUsageObject', () => {
  it.each([
    ['{"choices":[],"usage":{"prompt_tokens":1}}', true],
    ['{"usage" : \n {"input_tokens":1}}', true],
    ['{"x_groq":{"id":"a","usage":{"prompt_tokens":3}}}', true],
    // OpenAI's content chunks once usage was asked for: no count in them.
    ['{"choices":[{"delta":{"content":"hi"}}],"usage":null}', false],
    ['{"type":"response.created","response":{"usage":null}}', false],
    // The word as a value or inside text is not the key; a later real key still counts.
    ['{"content":"usage","other":1}', false],
    ['{"content":"say \\"usage\\": {"}', false],
    ['{"content":"usage","usage":{"total_tokens":2}}', true],
    ['{"choices":[{"delta":{"content":"hi"}}]}', false],
  ])('%s → %p', (json, expected) => {
    expect(hasUsageObject(json)).toBe(expected);
  });
});
