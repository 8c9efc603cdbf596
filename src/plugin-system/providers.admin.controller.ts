import { Body, Controller, Get, Param, Post, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { Audit } from '../audit/audit.decorator';
import { CheckPolicies } from '../auth/decorators';
import { isHtmx } from '../common/http';
import { notFound, ValidationProblem } from '../common/problem';
import { validateForm } from '../common/validation';
import { flash, render } from '../common/views';
import { PriceDto } from './dto/set-prices.dto';
import { PricingService, type PriceRow } from './pricing.service';
import { toFailedProviderView, toProviderView } from './provider.view';
import { ProviderRegistry } from './provider-registry';

/** Console → Providers: what is loaded, what failed and why, and each provider's prices. */
@Controller('admin/providers')
export class ProvidersAdminController {
  constructor(
    private readonly registry: ProviderRegistry,
    private readonly pricing: PricingService,
  ) {}

  @Get()
  @CheckPolicies((ability) => ability.can('read', 'Provider'))
  index(@Req() req: Request, @Res() res: Response) {
    render(req, res, 'providers/index', {
      title: 'Providers',
      nav: 'providers',
      providers: this.registry.loaded().map(toProviderView),
      failed: this.registry.failed().map(toFailedProviderView),
    });
  }

  @Get(':id')
  @CheckPolicies((ability) => ability.can('read', 'Provider'))
  async show(@Req() req: Request, @Res() res: Response, @Param('id') id: string) {
    const loaded = this.registry.loaded().find((p) => p.manifest.id === id);
    if (!loaded) throw notFound('Provider', id);
    const canEdit = req.ability?.can('update', 'Pricing') ?? false;
    render(req, res, 'providers/show', {
      title: loaded.plugin.config.name,
      nav: 'providers',
      provider: toProviderView(loaded),
      prices: (await this.pricing.rows(id)).map((row) => ({ ...row, providerId: id, canEdit })),
      canEdit,
    });
  }

  /** Saves one model's price; htmx swaps the row, a plain form post comes back to the page. */
  @Post(':id/pricing')
  @Audit('pricing.update', 'Provider')
  @CheckPolicies((ability) => ability.can('update', 'Pricing'))
  async setPrice(
    @Req() req: Request,
    @Res() res: Response,
    @Param('id') id: string,
    @Body() body: Record<string, unknown>,
  ) {
    this.registry.require(id);
    const { dto, errors } = await validateForm(PriceDto, body);
    if (errors.length > 0) {
      res.locals.auditReason = 'invalid price';
      if (isHtmx(req)) {
        // The row as it is stored (nothing was saved: it keeps its source), with what was typed.
        const model = typeof body.model === 'string' ? body.model : '';
        const stored = (await this.pricing.rows(id)).find((r) => r.model === model);
        const row = {
          ...(stored ?? { model, source: 'plugin', listed: false }),
          input: body.input,
          output: body.output,
          cachedInput: body.cachedInput,
          providerId: id,
          canEdit: true,
          failed: true,
          errors: ValidationProblem.byField(errors),
        };
        return render(req, res, 'providers/show', { row }, { partial: 'providers/price', status: 400 });
      }
      throw new ValidationProblem(errors);
    }
    await this.pricing.set(id, [dto], req.authUser?.email ?? null);
    await this.answerWithRow(req, res, id, dto.model, `Saved the price of ${dto.model}.`);
  }

  @Post(':id/pricing/:model/reset')
  @Audit('pricing.reset', 'Provider')
  @CheckPolicies((ability) => ability.can('update', 'Pricing'))
  async resetPrice(@Req() req: Request, @Res() res: Response, @Param('id') id: string, @Param('model') model: string) {
    await this.pricing.reset(id, model);
    await this.answerWithRow(req, res, id, model, `${model} is back to the plugin's price.`);
  }

  private async answerWithRow(req: Request, res: Response, id: string, model: string, message: string) {
    if (!isHtmx(req)) {
      flash(req, 'success', message);
      return res.redirect(303, `/admin/providers/${id}`);
    }
    const row: PriceRow | undefined = (await this.pricing.rows(id)).find((r) => r.model === model);
    // A reset of a model the plugin does not list removes the row altogether.
    if (!row) return res.status(200).send('');
    render(
      req,
      res,
      'providers/show',
      { row: { ...row, providerId: id, canEdit: true, saved: true } },
      { partial: 'providers/price' },
    );
  }
}
