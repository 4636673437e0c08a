package ingress

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/proxy/model"
)

// TestQueryRules checks which query parameters restQueries refuses, rule
// by rule, over the shapes google.api.http allows (package proxy's
// TestQueryCannotOverrideBoundFields runs the same over HTTP): JSON and
// proto names, additional bindings, literal segments before variables,
// nested fields, a body field, oneofs, verbs, custom methods, and requests
// vanguard does not take for REST.
func TestQueryRules(t *testing.T) {
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	fld := func(name, json string, num int32, typ descriptorpb.FieldDescriptorProto_Type, msg string, oneof *int32) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), JsonName: proto.String(json), Number: proto.Int32(num), Type: typ.Enum(), Label: opt, OneofIndex: oneof}
		if msg != "" {
			f.TypeName = proto.String(msg)
		}
		return f
	}
	msgType := descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
	method := func(name string, rule *annotations.HttpRule) *descriptorpb.MethodDescriptorProto {
		m := &descriptorpb.MethodDescriptorProto{Name: proto.String(name), InputType: proto.String(".r.Req"), OutputType: proto.String(".r.Req"),
			Options: &descriptorpb.MethodOptions{}}
		proto.SetExtension(m.Options, annotations.E_Http, rule)
		return m
	}
	get := func(p string) *annotations.HttpRule {
		return &annotations.HttpRule{Pattern: &annotations.HttpRule_Get{Get: p}}
	}
	file := &descriptorpb.FileDescriptorProto{
		Name: proto.String("r/r.proto"), Package: proto.String("r"), Syntax: proto.String("proto3"),
		Dependency: []string{"google/api/annotations.proto"},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Item"), Field: []*descriptorpb.FieldDescriptorProto{fld("id", "id", 1, str, "", nil), fld("qty", "qty", 2, str, "", nil)}},
			{Name: proto.String("Req"), Field: []*descriptorpb.FieldDescriptorProto{
				fld("user_id", "userId", 1, str, "", nil), fld("item", "item", 2, msgType, ".r.Item", nil), fld("name", "name", 3, str, "", nil),
				fld("alias", "alias", 4, str, "", proto.Int32(0)), fld("email", "email", 5, str, "", proto.Int32(0)),
			}, OneofDecl: []*descriptorpb.OneofDescriptorProto{{Name: proto.String("who")}}},
		},
		Service: []*descriptorpb.ServiceDescriptorProto{{Name: proto.String("Carts"), Method: []*descriptorpb.MethodDescriptorProto{
			method("Get", &annotations.HttpRule{Pattern: &annotations.HttpRule_Get{Get: "/carts/{user_id}"},
				AdditionalBindings: []*annotations.HttpRule{get("/carts/{user_id}/items")}}),
			method("Special", get("/carts/special")),
			method("AddItem", &annotations.HttpRule{Pattern: &annotations.HttpRule_Post{Post: "/carts/{user_id}/items"}, Body: "item"}),
			method("Named", get("/v1/{name=shelves/*}/books/{item.id}")),
			method("ByAlias", get("/aliases/{alias}")),
			method("Clear", &annotations.HttpRule{Pattern: &annotations.HttpRule_Post{Post: "/carts/{user_id}:clear"}, Body: "*"}),
			method("Any", &annotations.HttpRule{Pattern: &annotations.HttpRule_Custom{Custom: &annotations.CustomHttpPattern{Kind: "*", Path: "/any/{name}"}}}),
			method("Rest", get("/files/{name=**}")),
		}}},
	}
	set, err := proto.Marshal(&descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{
		protodesc.ToFileDescriptorProto(descriptorpb.File_google_protobuf_descriptor_proto),
		protodesc.ToFileDescriptorProto(annotations.File_google_api_http_proto),
		protodesc.ToFileDescriptorProto(annotations.File_google_api_annotations_proto),
		file,
	}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.BuildModel(&cloudstate.EntitySpec{
		Proto: set, Entities: []*cloudstate.Entity{{EntityType: model.Action, ServiceName: "r.Carts"}},
		ServiceInfo: &cloudstate.ServiceInfo{ProtocolMajorVersion: model.ProtocolMajor, ProtocolMinorVersion: model.ProtocolMinor},
	}, []string{model.Action})
	if err != nil {
		t.Fatal(err)
	}
	// The rules must be ones vanguard takes.
	if _, err := New(Config{Model: m, Caller: echoCaller{}}); err != nil {
		t.Fatal(err)
	}
	q, err := newRESTQueries(m)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, method, target string
		header               map[string]string
		refused              string // a part of the reason; "" if let through
	}{
		{"JSON name of a path variable", "GET", "/carts/a?userId=b", nil, `"userId" overrides user_id, which the path of GET /carts/{user_id} binds`},
		{"proto name of a path variable", "GET", "/carts/a?user_id=b", nil, "the path of GET /carts/{user_id}"},
		{"additional binding", "GET", "/carts/a/items?userId=b", nil, "the path of GET /carts/{user_id}/items"},
		{"an unbound field", "GET", "/carts/a?name=x", nil, ""},
		{"literal before variable", "GET", "/carts/special?userId=b", nil, ""},
		{"literal, then variable", "GET", "/carts/special/items?userId=b", nil, "the path of GET /carts/{user_id}/items"},
		{"body field", "POST", "/carts/a/items?item.qty=3", nil, `"item.qty" overrides item, which the body of POST /carts/{user_id}/items binds`},
		{"body field whole", "POST", "/carts/a/items?item=3", nil, "the body of"},
		{"beside a body field", "POST", "/carts/a/items?name=x", nil, ""},
		{"nested path variable", "GET", "/v1/shelves/s/books/b?item.id=x", nil, "overrides item.id, which the path"},
		{"beside a nested path variable", "GET", "/v1/shelves/s/books/b?item.qty=3", nil, ""},
		{"variable over segments", "GET", "/v1/shelves/s/books/b?name=x", nil, "overrides name"},
		{"oneof of a path variable", "GET", "/aliases/a?email=e", nil, `"email" overrides alias`},
		{"beside a oneof", "GET", "/aliases/a?name=x", nil, ""},
		{"body * and a verb", "POST", "/carts/a:clear?name=x", nil, `POST /carts/{user_id}:clear takes no query parameters (got "name")`},
		{"custom method *", "PATCH", "/any/n?name=m", nil, "the path of * /any/{name}"},
		{"double wildcard", "GET", "/files/a/b/c?name=x", nil, "the path of GET /files/{name=**}"},
		{"unknown field", "GET", "/carts/a?nope=1", nil, ""},
		{"no rule matches", "GET", "/nowhere?userId=1", nil, ""},
		{"path matches, method does not", "DELETE", "/carts/a?userId=b", nil, ""},
		{"Connect GET", "GET", "/carts/a?userId=b&connect=v1", nil, ""},
		{"Connect header", "GET", "/carts/a?userId=b", map[string]string{"Connect-Protocol-Version": "1"}, ""},
		{"gRPC-Web", "POST", "/carts/a/items?item.qty=1", map[string]string{"Content-Type": "application/grpc-web+proto"}, ""},
		{"REST for vanguard, JSON", "POST", "/carts/a/items?item.qty=1", map[string]string{"Content-Type": "application/json", "Connect-Protocol-Version": "2"}, "the body of"},
		{"REST for vanguard, any type", "POST", "/carts/a/items?item.qty=1", map[string]string{"Content-Type": "text/plain"}, "the body of"},
	}
	// The rule matched is the one vanguard serves the request by.
	called := make(chan string, 1)
	addr, _ := serve(t, Config{Model: m, Caller: recordCaller{called}}, nil)
	for _, c := range cases {
		if c.header != nil {
			continue
		}
		path, _, _ := strings.Cut(c.target, "?")
		var body io.Reader
		if c.method == "POST" {
			body = strings.NewReader("{}")
		}
		req, err := http.NewRequestWithContext(t.Context(), c.method, "http://"+addr+path, body)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		var served string
		select {
		case served = <-called:
		default:
		}
		var matched string
		if rule := q.match(path, c.method); rule != nil {
			matched = rule.method.Path
		}
		if served != matched {
			t.Errorf("%s %s: vanguard served %q (%d), the rule matched is of %q", c.method, path, served, resp.StatusCode, matched)
		}
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(c.method, c.target, nil)
			for k, v := range c.header {
				r.Header.Set(k, v)
			}
			err := q.check(r)
			switch {
			case c.refused == "" && err != nil:
				t.Fatalf("%s %s refused: %v", c.method, c.target, err)
			case c.refused != "" && (err == nil || !strings.Contains(err.Error(), c.refused)):
				t.Fatalf("%s %s: %v, want it refused as %q", c.method, c.target, err, c.refused)
			}
		})
	}
}

// recordCaller is echoCaller telling which method it was called for.
type recordCaller struct{ called chan<- string }

func (c recordCaller) Call(ctx context.Context, m *model.Method, request []byte, md *cloudstate.Metadata) (*cloudstate.Reply, error) {
	c.called <- m.Path
	return echoCaller{}.Call(ctx, m, request, md)
}

func (recordCaller) Stream(ctx context.Context, m *model.Method, md *cloudstate.Metadata, recv func() ([]byte, error), send func(*cloudstate.Reply) error) error {
	return echoCaller{}.Stream(ctx, m, md, recv, send)
}
