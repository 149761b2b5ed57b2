package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cepcomunicacion/cepjobs/internal/meta/graph"
	"github.com/cepcomunicacion/cepjobs/internal/vendor"
)

// This file reads the leads that Meta Lead Ads forms collect, once the
// leadgen webhook has announced them. Reference:
// https://developers.facebook.com/docs/marketing-api/guides/lead-ads/retrieving

const opReadLead = "read lead"

// LeadAdsConfig is the Lead Ads part of the configuration. With no page
// token, announced leads wait in the queue (and then the archive) for it.
type LeadAdsConfig struct {
	// PageAccessToken is a Page token with leads_retrieval (and the Page
	// tasks that reading leads needs).
	PageAccessToken string `env:"META_PAGE_ACCESS_TOKEN" secret:"true"`
	// Forms maps lead form ids to course slugs: form_id=course-slug,…
	// A form not listed needs a question named "course".
	Forms FormCourses `env:"META_LEAD_FORMS"`
	// DefaultCountry is the calling code (digits, no +) given to phone
	// numbers that come without one.
	DefaultCountry string `env:"META_LEAD_DEFAULT_COUNTRY" default:"34"`
	// MarketingCheckbox is the checkbox_key of the form's custom disclaimer
	// checkbox that asks for marketing consent.
	MarketingCheckbox string `env:"META_LEAD_MARKETING_CHECKBOX" default:"marketing"`
}

var (
	countryCodePattern = regexp.MustCompile(`^[1-9][0-9]{0,2}$`)
	checkboxKeyPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,100}$`)
	courseSlugPattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
)

// Enabled reports whether announced leads are read.
func (c LeadAdsConfig) Enabled() bool { return c.PageAccessToken != "" }

// Validate reports what is wrong with c.
func (c LeadAdsConfig) Validate() error {
	var errs []error
	if strings.ContainsAny(c.PageAccessToken, " \t\r\n") {
		errs = append(errs, errors.New("META_PAGE_ACCESS_TOKEN: contains white space; paste the token alone"))
	}
	if !countryCodePattern.MatchString(c.DefaultCountry) {
		errs = append(errs, fmt.Errorf("META_LEAD_DEFAULT_COUNTRY: want a calling code of 1-3 digits without +, such as 34, got %q", c.DefaultCountry))
	}
	if !checkboxKeyPattern.MatchString(c.MarketingCheckbox) {
		errs = append(errs, errors.New("META_LEAD_MARKETING_CHECKBOX: want the checkbox key set in the form's custom disclaimer, such as marketing"))
	}
	return errors.Join(errs...)
}

// FormCourses is META_LEAD_FORMS: lead form id → course slug.
type FormCourses map[string]string

// UnmarshalText parses form_id=course-slug,… Errors name the entry by
// position.
func (f *FormCourses) UnmarshalText(b []byte) error {
	out := FormCourses{}
	var errs []error
	for i, entry := range strings.Split(string(b), ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		form, course, ok := strings.Cut(entry, "=")
		form, course = strings.TrimSpace(form), strings.TrimSpace(course)
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("entry %d: want form_id=course-slug", i+1))
		case !graphIDPattern.MatchString(form):
			errs = append(errs, fmt.Errorf("entry %d: the form id must be the numeric id Meta shows", i+1))
		case !courseSlugPattern.MatchString(course):
			errs = append(errs, fmt.Errorf("entry %d: the course must be a slug such as tecnico-marketing-digital", i+1))
		case out[form] != "":
			errs = append(errs, fmt.Errorf("entry %d: form %s listed twice", i+1, form))
		default:
			out[form] = course
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	*f = out
	return nil
}

// String is the variable's form, sorted, as `cepjobs config` prints it.
func (f FormCourses) String() string {
	forms := make([]string, 0, len(f))
	for k := range f {
		forms = append(forms, k)
	}
	slices.Sort(forms)
	for i, k := range forms {
		forms[i] = k + "=" + f[k]
	}
	return strings.Join(forms, ",")
}

// LeadAd is one lead as a Lead Ads form collected it. Fields and
// checkboxes hold personal data: never log them.
type LeadAd struct {
	ID string
	// CreatedTime is when the person submitted the form.
	CreatedTime time.Time
	FormID      string
	AdID        string
	CampaignID  string
	// Fields are the form's answers in form order (field_data).
	Fields []LeadField
	// Checkboxes are the custom disclaimer checkboxes by checkbox_key.
	Checkboxes map[string]bool
}

// LeadField is one answer of a form.
type LeadField struct {
	Name   string
	Values []string
}

// LeadAdsParams configures a LeadAdsClient. Zero values get defaults.
type LeadAdsParams struct {
	Config LeadAdsConfig
	// BaseURL and APIVersion are the Graph API's (META_BASE_URL and
	// META_API_VERSION, shared with the Conversions API).
	BaseURL, APIVersion string
	// HTTPClient defaults to vendor.NewHTTPClient with a 10 s timeout.
	HTTPClient *http.Client
	Now        func() time.Time
}

// LeadAdsClient reads leads with a Page token.
type LeadAdsClient struct {
	token, base, version string
	http                 *http.Client
	now                  func() time.Time
}

// NewLeadAdsClient returns a client for p, whose Config must be enabled.
func NewLeadAdsClient(p LeadAdsParams) (*LeadAdsClient, error) {
	if !p.Config.Enabled() {
		return nil, errors.New("meta lead ads: META_PAGE_ACCESS_TOKEN is required")
	}
	c := &LeadAdsClient{token: p.Config.PageAccessToken, base: p.BaseURL, version: p.APIVersion, http: p.HTTPClient, now: p.Now}
	if c.base == "" {
		c.base = graph.DefaultBaseURL
	}
	if c.version == "" {
		c.version = graph.DefaultVersion
	}
	if err := errors.Join(graph.CheckBaseURL("META_BASE_URL", c.base), graph.CheckVersion("META_API_VERSION", c.version)); err != nil {
		return nil, err
	}
	if c.http == nil {
		c.http = vendor.NewHTTPClient(10 * time.Second)
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

// leadFields are the fields read of a lead.
const leadFields = "created_time,field_data,custom_disclaimer_responses,form_id,ad_id,campaign_id"

type leadAnswer struct {
	ID          string `json:"id"`
	CreatedTime string `json:"created_time"`
	FormID      string `json:"form_id"`
	AdID        string `json:"ad_id"`
	CampaignID  string `json:"campaign_id"`
	FieldData   []struct {
		Name   string   `json:"name"`
		Values []string `json:"values"`
	} `json:"field_data"`
	Disclaimers []struct {
		Key     string   `json:"checkbox_key"`
		Checked flexBool `json:"is_checked"`
	} `json:"custom_disclaimer_responses"`
}

// Lead reads one lead: GET /{leadgen_id}?fields=…. Errors are
// *vendor.Error, classified by graph.StatusError; their text holds ids and
// Meta's codes, never the lead's answers.
func (c *LeadAdsClient) Lead(ctx context.Context, leadgenID string) (LeadAd, error) {
	if !graphIDPattern.MatchString(leadgenID) {
		return LeadAd{}, vendor.Permanentf(vendorName, opReadLead, "leadgen id must be numeric")
	}
	u := strings.TrimRight(c.base, "/") + "/" + c.version + "/" + url.PathEscape(leadgenID) + "?" + url.Values{"fields": {leadFields}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return LeadAd{}, vendor.Permanentf(vendorName, opReadLead, "build request: invalid base URL")
	}
	// The token goes in the Authorization header, never in the URL.
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	resp, body, err := vendor.Do(c.http, req, vendorName, opReadLead)
	if err != nil {
		return LeadAd{}, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return LeadAd{}, graph.StatusError(vendorName, opReadLead, resp, body, c.now(), nil)
	}
	var ans leadAnswer
	if err := json.Unmarshal(body, &ans); err != nil || ans.ID == "" {
		return LeadAd{}, vendor.Transientf(vendorName, opReadLead, "unreadable answer (HTTP %d)", resp.StatusCode)
	}
	lead := LeadAd{ID: ans.ID, FormID: ans.FormID, AdID: ans.AdID, CampaignID: ans.CampaignID, Checkboxes: map[string]bool{}}
	if ans.CreatedTime != "" {
		t, err := parseGraphTime(ans.CreatedTime)
		if err != nil {
			return LeadAd{}, vendor.Transientf(vendorName, opReadLead, "unreadable created_time")
		}
		lead.CreatedTime = t
	}
	for _, f := range ans.FieldData {
		lead.Fields = append(lead.Fields, LeadField{Name: f.Name, Values: f.Values})
	}
	for _, d := range ans.Disclaimers {
		lead.Checkboxes[d.Key] = bool(d.Checked)
	}
	return lead, nil
}

// parseGraphTime reads Graph API times: ISO 8601 with a +0000 offset (no
// colon), or RFC 3339.
func parseGraphTime(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02T15:04:05-0700", time.RFC3339} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errors.New("not a Graph API time")
}

// flexBool decodes is_checked, which Meta sends as true/false, "1"/"" or
// "true"/"false".
type flexBool bool

func (v *flexBool) UnmarshalJSON(b []byte) error {
	switch strings.ToLower(strings.Trim(string(b), `"`)) {
	case "true", "1", "yes":
		*v = true
	default:
		*v = false
	}
	return nil
}
