package mailchimp

import (
	"context"
	"errors"
	"net/http"

	"github.com/cepcomunicacion/cepjobs/internal/vendor"
)

// DeleteMemberPermanently erases a member and all their data from the
// audience (POST …/members/{hash}/actions/delete-permanent), as an RGPD
// erasure needs: an archived member could be re-imported. A member that is
// not there (404) is already gone, which is success. The address can never
// be re-subscribed through the API afterwards, only by the person.
func (c *Client) DeleteMemberPermanently(ctx context.Context, email string) error {
	const op = "delete member permanently"
	err := c.call(ctx, op, http.MethodPost, c.memberPath(SubscriberHash(email))+"/actions/delete-permanent", struct{}{}, nil)
	var ve *vendor.Error
	if errors.As(err, &ve) && ve.Status == http.StatusNotFound {
		return nil
	}
	return err
}
