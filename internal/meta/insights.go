package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cepcomunicacion/cepjobs/internal/meta/graph"
	"github.com/cepcomunicacion/cepjobs/internal/vendor"
)

// This file reads campaign spend and results from the Ads Insights API
// (Marketing API), for cost per lead. Reference:
// https://developers.facebook.com/docs/marketing-api/insights

const opInsights = "read ads insights"

// AdsConfig is the Ads Insights part of the configuration. With no ad
// account and no token, campaign spend is not read.
type AdsConfig struct {
	// AdAccountID is the ad account, as act_<digits>.
	AdAccountID string `env:"META_AD_ACCOUNT_ID"`
	// AccessToken is a (system user) token with ads_read on the ad account.
	// It is not META_ACCESS_TOKEN's fallback: that one is the Conversions
	// API token of a dataset, with other permissions and another owner.
	AccessToken string `env:"META_ADS_ACCESS_TOKEN" secret:"true"`
	// Days is how many days, ending with the task's day, each sync reads
	// again: Meta restates the spend and results of recent days.
	Days int `env:"META_INSIGHTS_DAYS" default:"3"`
}

// MaxInsightsDays bounds META_INSIGHTS_DAYS: one sync is one report, and
// Meta asks for big ones to be run as async jobs.
const MaxInsightsDays = 90

var adAccountPattern = regexp.MustCompile(`^act_[0-9]{1,32}$`)

// Enabled reports whether campaign spend is read.
func (c AdsConfig) Enabled() bool { return c.AdAccountID != "" && c.AccessToken != "" }

// Validate reports what is wrong with c. A half-set configuration is an
// error: silently reading no spend would look like campaigns that cost
// nothing.
func (c AdsConfig) Validate() error {
	var errs []error
	switch {
	case c.AdAccountID != "" && c.AccessToken == "":
		errs = append(errs, errors.New("META_ADS_ACCESS_TOKEN: required when META_AD_ACCOUNT_ID is set (a token with ads_read on the ad account)"))
	case c.AdAccountID == "" && c.AccessToken != "":
		errs = append(errs, errors.New("META_AD_ACCOUNT_ID: required when META_ADS_ACCESS_TOKEN is set"))
	}
	if c.AdAccountID != "" && !adAccountPattern.MatchString(c.AdAccountID) {
		errs = append(errs, errors.New("META_AD_ACCOUNT_ID: want act_ and the ad account's numeric id, such as act_1234567890"))
	}
	if strings.ContainsAny(c.AccessToken, " \t\r\n") {
		errs = append(errs, errors.New("META_ADS_ACCESS_TOKEN: contains white space; paste the token alone"))
	}
	if c.Days < 1 || c.Days > MaxInsightsDays {
		errs = append(errs, fmt.Errorf("META_INSIGHTS_DAYS: want a number of days between 1 and %d, got %d", MaxInsightsDays, c.Days))
	}
	return errors.Join(errs...)
}

// Insight is one campaign on one day.
type Insight struct {
	CampaignID   string
	CampaignName string
	// Day is the report day (the ad account's time zone) as a UTC midnight.
	Day time.Time
	// Spend is the amount as Meta sends it, in Currency.
	Spend       string
	Currency    string
	Impressions int64
	Clicks      int64
	// Leads is Meta's lead count ("lead" action), or its on-Facebook
	// lead form count when Meta sends no total.
	Leads int64
}

// AdsParams configures an AdsClient. Zero values get defaults.
type AdsParams struct {
	Config AdsConfig
	// BaseURL and APIVersion are the Graph API's (META_BASE_URL and
	// META_API_VERSION, shared with the Conversions API).
	BaseURL, APIVersion string
	// HTTPClient defaults to vendor.NewHTTPClient with a 30 s timeout.
	HTTPClient *http.Client
	// PageSize is the rows asked for per page; 500 when zero.
	PageSize int
	Now      func() time.Time
}

// AdsClient reads insights of ad accounts.
type AdsClient struct {
	token, base, version string
	pageSize             int
	http                 *http.Client
	now                  func() time.Time
}

// NewAdsClient returns a client for p, whose Config must be enabled and
// valid.
func NewAdsClient(p AdsParams) (*AdsClient, error) {
	if !p.Config.Enabled() {
		return nil, errors.New("meta ads: META_AD_ACCOUNT_ID and META_ADS_ACCESS_TOKEN are required")
	}
	if p.Config.Days == 0 {
		p.Config.Days = 3
	}
	if err := p.Config.Validate(); err != nil {
		return nil, err
	}
	c := &AdsClient{token: p.Config.AccessToken, base: p.BaseURL, version: p.APIVersion, pageSize: p.PageSize, http: p.HTTPClient, now: p.Now}
	if c.base == "" {
		c.base = graph.DefaultBaseURL
	}
	if c.version == "" {
		c.version = graph.DefaultVersion
	}
	if err := errors.Join(graph.CheckBaseURL("META_BASE_URL", c.base), graph.CheckVersion("META_API_VERSION", c.version)); err != nil {
		return nil, err
	}
	if c.pageSize <= 0 {
		c.pageSize = 500
	}
	if c.http == nil {
		c.http = vendor.NewHTTPClient(30 * time.Second)
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

// insightsFields are the fields asked for. account_currency fills the
// currency column; actions holds the lead counts.
const insightsFields = "campaign_id,campaign_name,spend,impressions,clicks,actions,account_currency"

// maxPages stops a cursor that never ends (a Meta bug, or a fake that
// loops) from running until the task times out.
const maxPages = 1000

// Insights reads one row per campaign and day of accountID (act_…) for the
// days from..to (inclusive, the account's time zone), following the
// cursor pages. Errors are *vendor.Error, classified by graph.StatusError.
func (c *AdsClient) Insights(ctx context.Context, accountID string, from, to time.Time) ([]Insight, error) {
	if !adAccountPattern.MatchString(accountID) {
		return nil, vendor.Permanentf(vendorName, opInsights, "ad account id must be act_ and digits")
	}
	if to.Before(from) {
		return nil, vendor.Permanentf(vendorName, opInsights, "time range ends before it starts")
	}
	timeRange, _ := json.Marshal(map[string]string{"since": from.Format(time.DateOnly), "until": to.Format(time.DateOnly)})
	q := url.Values{
		"level":          {"campaign"},
		"time_increment": {"1"},
		"fields":         {insightsFields},
		"time_range":     {string(timeRange)},
		"limit":          {strconv.Itoa(c.pageSize)},
	}
	endpoint := graph.URL(c.base, c.version, accountID, "insights")
	var (
		out  []Insight
		seen = map[string]bool{}
	)
	for page := 0; ; page++ {
		if page == maxPages {
			return nil, vendor.Transientf(vendorName, opInsights, "more than %d pages", maxPages)
		}
		ans, err := c.get(ctx, endpoint+"?"+q.Encode())
		if err != nil {
			return nil, err
		}
		for _, row := range ans.Data {
			in, err := row.insight()
			if err != nil {
				return nil, vendor.Transientf(vendorName, opInsights, "unreadable row: %v", err)
			}
			out = append(out, in)
		}
		// paging.next is absent on the last page, though cursors may not
		// be. The next page is asked for with our own URL and the after
		// cursor: next is an absolute URL that carries the token, and
		// only our base URL may receive the token.
		after := ans.Paging.Cursors.After
		if ans.Paging.Next == "" || after == "" {
			return out, nil
		}
		if seen[after] {
			return nil, vendor.Transientf(vendorName, opInsights, "paging cursor repeats")
		}
		seen[after] = true
		q.Set("after", after)
	}
}

type insightsAnswer struct {
	Data   []insightRow `json:"data"`
	Paging struct {
		Cursors struct {
			After string `json:"after"`
		} `json:"cursors"`
		Next string `json:"next"`
	} `json:"paging"`
}

// insightRow is one row as Meta sends it: numbers as strings.
type insightRow struct {
	CampaignID   string       `json:"campaign_id"`
	CampaignName string       `json:"campaign_name"`
	Spend        numberString `json:"spend"`
	Impressions  numberString `json:"impressions"`
	Clicks       numberString `json:"clicks"`
	Currency     string       `json:"account_currency"`
	DateStart    string       `json:"date_start"`
	Actions      []struct {
		Type  string       `json:"action_type"`
		Value numberString `json:"value"`
	} `json:"actions"`
}

var decimalPattern = regexp.MustCompile(`^-?[0-9]{1,10}(\.[0-9]{1,6})?$`)

// insight checks a row. Its errors name fields, never values (campaign
// names are ours, but the rule is simpler kept whole).
func (r insightRow) insight() (Insight, error) {
	if !graphIDPattern.MatchString(r.CampaignID) {
		return Insight{}, errors.New("campaign_id is not a numeric id")
	}
	day, err := time.Parse(time.DateOnly, r.DateStart)
	if err != nil {
		return Insight{}, errors.New("date_start is not a date")
	}
	in := Insight{CampaignID: r.CampaignID, CampaignName: r.CampaignName, Day: day, Currency: r.Currency, Spend: string(r.Spend)}
	if in.Spend == "" {
		in.Spend = "0"
	}
	if !decimalPattern.MatchString(in.Spend) {
		return Insight{}, errors.New("spend is not a decimal amount")
	}
	if in.Impressions, err = r.Impressions.count(); err != nil {
		return Insight{}, errors.New("impressions is not a count")
	}
	if in.Clicks, err = r.Clicks.count(); err != nil {
		return Insight{}, errors.New("clicks is not a count")
	}
	// "lead" is Meta's total (the Leads column of Ads Manager: lead forms
	// and pixel leads); onsite_conversion.lead_grouped counts lead forms
	// only and is part of it, so adding them would count form leads twice.
	var total, grouped *int64
	for _, a := range r.Actions {
		n, err := a.Value.count()
		if err != nil {
			return Insight{}, errors.New("an action value is not a count")
		}
		switch a.Type {
		case "lead":
			total = &n
		case "onsite_conversion.lead_grouped":
			grouped = &n
		}
	}
	switch {
	case total != nil:
		in.Leads = *total
	case grouped != nil:
		in.Leads = *grouped
	}
	return in, nil
}

var graphIDPattern = regexp.MustCompile(`^[0-9]{1,32}$`)

// numberString decodes a number Meta sends as a JSON string ("361324") or,
// now and then, as a JSON number.
type numberString string

func (n *numberString) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*n = numberString(s)
		return nil
	}
	var num json.Number
	if err := json.Unmarshal(b, &num); err != nil {
		return err
	}
	*n = numberString(num.String())
	return nil
}

// count is the value as a whole number; empty is 0. Meta sends counts
// without decimals, but a "12.0" is still twelve.
func (n numberString) count() (int64, error) {
	if n == "" {
		return 0, nil
	}
	if v, err := strconv.ParseInt(string(n), 10, 64); err == nil && v >= 0 {
		return v, nil
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || f < 0 || f > 1e15 {
		return 0, errors.New("not a count")
	}
	return int64(f + 0.5), nil
}

// get sends one authenticated GET and decodes the answer. The token goes in
// the Authorization header, never in the URL that proxies and transport
// errors may log.
func (c *AdsClient) get(ctx context.Context, u string) (insightsAnswer, error) {
	var ans insightsAnswer
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return ans, vendor.Permanentf(vendorName, opInsights, "build request: invalid base URL")
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	resp, body, err := vendor.Do(c.http, req, vendorName, opInsights)
	if err != nil {
		return ans, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return ans, graph.StatusError(vendorName, opInsights, resp, body, c.now(), nil)
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return ans, vendor.Transientf(vendorName, opInsights, "unreadable answer (HTTP %d)", resp.StatusCode)
	}
	return ans, nil
}
