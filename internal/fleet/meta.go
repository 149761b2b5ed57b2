package fleet

import (
	"github.com/cepcomunicacion/cepjobs/handlers"
	"github.com/cepcomunicacion/cepjobs/internal/meta"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// addMetaLeadgen registers meta:leadgen on worker-automation when a Page
// token is configured. Without one the leads the intake queued wait in the
// queue, then in the archive, for ops to run once the token is set: a
// lead is never dropped for want of configuration.
func addMetaLeadgen(x automationExtras) error {
	lc := x.cfg.MetaLeads
	if !lc.Enabled() {
		x.log.Warn("meta lead ads off: meta:leadgen tasks wait for META_PAGE_ACCESS_TOKEN")
		return nil
	}
	client, err := meta.NewLeadAdsClient(meta.LeadAdsParams{Config: lc, BaseURL: x.cfg.Meta.BaseURL, APIVersion: x.cfg.Meta.APIVersion})
	if err != nil {
		return err
	}
	// worker-automation has no dispatcher of its own: the lead:process
	// rows this handler writes go to Redis through this one (and through
	// the intake's relay if Redis does not take them).
	dispatch := x.base.dispatcher(x.log)
	x.mux.Handle(tasks.TypeMetaLeadgen, handlers.NewMetaLeadgen(handlers.MetaLeadgenDeps{
		Client: client, Store: x.base.store, Dispatch: dispatch,
		Forms: lc.Forms, DefaultCountry: lc.DefaultCountry, MarketingCheckbox: lc.MarketingCheckbox,
		Logger: x.log,
	}))
	x.log.Info("meta lead ads on", "forms", len(lc.Forms), "marketing_checkbox", lc.MarketingCheckbox)
	return nil
}

// addMetaInsights registers campaign:sync-meta on worker-stats. Without Meta
// Ads credentials the scheduled task is completed as a no-op, with a
// warning, instead of failing and being archived every day.
func addMetaInsights(x statsExtras) error {
	ac := x.cfg.MetaAds
	if !ac.Enabled() {
		x.log.Warn("meta insights off: set META_AD_ACCOUNT_ID and META_ADS_ACCESS_TOKEN")
		x.mux.Handle(tasks.TypeCampaignSyncMeta, handlers.MetaInsightsOff(x.log))
		return nil
	}
	client, err := meta.NewAdsClient(meta.AdsParams{Config: ac, BaseURL: x.cfg.Meta.BaseURL, APIVersion: x.cfg.Meta.APIVersion})
	if err != nil {
		return err
	}
	x.mux.Handle(tasks.TypeCampaignSyncMeta, handlers.NewMetaInsights(handlers.MetaInsightsDeps{
		Client: client, Store: x.base.store, AccountID: ac.AdAccountID, Days: ac.Days, Logger: x.log,
	}))
	x.log.Info("meta insights on", "ad_account", ac.AdAccountID, "days", ac.Days)
	return nil
}
