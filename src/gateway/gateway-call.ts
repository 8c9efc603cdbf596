import type { IncomingMessage, ServerResponse } from 'node:http';
import type { GatewayPrincipal } from '../access-tokens/access-tokens.service';
import type { ProviderPlugin } from '../plugin-system/provider-plugin';
import type { RequestBody } from './request-body';
import type { Target } from './scope';

/** One client request on its way through the gateway, once admitted and scoped. */
export interface Call extends RequestBody {
  req: IncomingMessage;
  res: ServerResponse;
  principal: GatewayPrincipal;
  plugin: ProviderPlugin;
  provider: string;
  /** The provider's origin, from its base URL, read once per request. */
  origin: string;
  target: Target;
  method: string;
  /** An OpenAI-style usage event that Keyward asked for and the client did not: not relayed. */
  dropEvent?: (data: string) => boolean;
}
