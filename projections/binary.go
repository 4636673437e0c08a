package projections

import (
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/jetstate/jetstate/internal/cebinding"
)

// The CloudEvents NATS binding. Binary content mode puts every attribute
// into a "ce-" header, percent-encoded as the HTTP binding's section
// 3.1.3.2 says, and the data into the body; datacontenttype goes into
// "content-type" and "ce-datacontenttype" both. The mapping lives in
// internal/cebinding, shared with the dead-letter publisher; these are
// its public names.

// ContentTypeCloudEventsJSON is the content type of a structured-mode
// message (JSON event format).
const ContentTypeCloudEventsJSON = cebinding.ContentTypeCloudEventsJSON

// NATSMsg renders ev as a NATS message on subject, in binary mode (headers
// and raw data) or, if structured, as the JSON event format with content
// type application/cloudevents+json.
func NATSMsg(subject string, ev *event.Event, structured bool) (*nats.Msg, error) {
	return cebinding.NATSMsg(subject, ev, structured)
}

// EventFromNATS decodes a CloudEvent from a NATS message in either content
// mode: binary if it has a ce-specversion header (names are matched
// without regard to case), otherwise structured (JSON event format). The
// event is validated; data is copied.
func EventFromNATS(msg *nats.Msg) (*event.Event, error) {
	return cebinding.EventFromNATS(msg)
}
