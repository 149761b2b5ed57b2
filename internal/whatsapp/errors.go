package whatsapp

import (
	"time"

	"github.com/cepcomunicacion/cepjobs/internal/meta/graph"
)

// rules are the Cloud API's own error codes, on top of the Graph API's
// common ones (190, 100, 4, 80007, …, see meta/graph). Meta asks clients to
// branch on code, not on title or HTTP status, and answers most of these
// with 400, so the status alone would call a throttle permanent.
//
// Reference: https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes
var rules = graph.Rules{
	// Throttling.
	130429: {Class: graph.Throttled, Reason: "throughput limit reached"},
	// One business number may send about one message every 6 s to the
	// same user; other recipients are not affected.
	131056: {Class: graph.Throttled, Reason: "pair rate limit reached", Wait: 6 * time.Second},
	80007:  {Class: graph.Throttled, Reason: "business account rate limit reached"},

	// Meta-side trouble.
	131000: {Class: graph.Transient, Reason: "something went wrong"},
	131016: {Class: graph.Transient, Reason: "service unavailable"},
	131057: {Class: graph.Transient, Reason: "account in maintenance mode"},
	133004: {Class: graph.Transient, Reason: "server temporarily unavailable"},

	// The recipient cannot get this message.
	131021: {Class: graph.Permanent, Reason: "recipient cannot be the sender"},
	131026: {Class: graph.Permanent, Reason: "message undeliverable"},
	131030: {Class: graph.Permanent, Reason: "recipient not in the test allowed list"},
	131047: {Class: graph.Permanent, Reason: "re-engagement window closed"},
	131050: {Class: graph.Permanent, Reason: "recipient stopped marketing messages"},

	// Our account or request is wrong.
	131005: {Class: graph.Permanent, Reason: "access denied"},
	131008: {Class: graph.Permanent, Reason: "required parameter missing"},
	131009: {Class: graph.Permanent, Reason: "parameter value not valid"},
	131031: {Class: graph.Permanent, Reason: "business account locked"},
	131042: {Class: graph.Permanent, Reason: "payment method problem"},
	131045: {Class: graph.Permanent, Reason: "phone number certificate problem"},
	// A quality restriction, not a passing throttle: retrying lowers the
	// number's quality further.
	131048: {Class: graph.Permanent, Reason: "spam rate limit: sending restricted"},
	131051: {Class: graph.Permanent, Reason: "unsupported message type"},
	130497: {Class: graph.Permanent, Reason: "account restricted from messaging this country"},
	133010: {Class: graph.Permanent, Reason: "phone number not registered"},

	// The template does not fit the call.
	132000: {Class: graph.Permanent, Reason: "template parameter count mismatch"},
	132001: {Class: graph.Permanent, Reason: "template does not exist in this language"},
	132005: {Class: graph.Permanent, Reason: "template text too long once filled"},
	132007: {Class: graph.Permanent, Reason: "template format character policy violated"},
	132012: {Class: graph.Permanent, Reason: "template parameter format mismatch"},
	132015: {Class: graph.Permanent, Reason: "template paused for low quality"},
	132016: {Class: graph.Permanent, Reason: "template disabled"},
}
