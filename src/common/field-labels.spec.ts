import { fieldLabel, labelMessage } from './field-labels';

describe('field labels', () => {
  it('puts the label where a message names its field', () => {
    expect(labelMessage('expiresAt', 'expiresAt must be in the future')).toBe('Expires must be in the future');
    expect(labelMessage('rateLimitPerMinute', 'rateLimitPerMinute must be a whole number')).toBe(
      'Requests per minute must be a whole number',
    );
    expect(labelMessage('models', 'each models entry must be a model id')).toBe('each Models entry must be a model id');
    expect(labelMessage('limit.value', 'value must be greater than 0')).toBe('Limit must be greater than 0');
    expect(labelMessage('limitValue', 'value must be greater than 0')).toBe('Limit must be greater than 0');
  });

  it('leaves other messages and unknown fields alone', () => {
    expect(labelMessage('key', 'This key is already stored')).toBe('This key is already stored');
    expect(labelMessage('keyname', 'keyname is odd')).toBe('keyname is odd');
    expect(labelMessage('managementKey', 'managementKey must be the provider management key')).toBe(
      'Management key must be the provider management key',
    );
    expect(fieldLabel('somethingNew')).toBe('somethingNew');
  });
});
