package ingress

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/jetstate/jetstate/proxy/model"
)

// restQueries refuses REST requests whose query string sets a field that
// the matched google.api.http rule binds in its path or its body.
//
// vanguard sets the body's fields, then the path variables, then the query
// parameters, so GET /carts/attacker?userId=victim read victim's cart and
// POST /counters/a/add?key=b added to b. google.api.http lets a query
// parameter set only a field that neither the path nor the body binds, and
// with body "*" there are no query parameters. Such requests are answered
// 400 with the reason rather than stripped of the parameters: the client
// asked for something the call would not do, and silently doing something
// else hides its mistake (or its attempt).
//
// vanguard's router is unexported, so the rule is matched here the way it
// matches it: over the same rules (each method's rule and its additional
// bindings, and the default POST /<service>/<method> with body "*" of
// server streams, which restSchema makes explicit), by the request's path
// split at "/" with a final ":verb" cut off, a literal segment tried
// before "*" and "*" before "**", a path that matches without the method
// ending the search, the method matched exactly or by a custom "*" rule.
type restQueries struct {
	root routeNode
}

type routeNode struct {
	children map[string]*routeNode
	verbs    map[string]map[string]*boundRule // verb, HTTP method
}

// boundRule is what one binding of a method binds.
type boundRule struct {
	method  *model.Method
	pattern string // "GET /counters/{key}", for messages
	input   protoreflect.MessageDescriptor
	bound   []boundField
	allBody bool // body "*"
}

type boundField struct {
	fields []protoreflect.FieldDescriptor
	by     string // "the path" or "the body"
}

func newRESTQueries(m *model.Model) (*restQueries, error) {
	q := &restQueries{}
	for _, path := range slices.Sorted(maps.Keys(m.Methods)) {
		meth := m.Methods[path]
		var rule *annotations.HttpRule
		if opts, ok := meth.Desc.Options().(*descriptorpb.MethodOptions); ok && proto.HasExtension(opts, annotations.E_Http) {
			rule, _ = proto.GetExtension(opts, annotations.E_Http).(*annotations.HttpRule)
		}
		if rule == nil || rule.GetPattern() == nil {
			if !isServerStream(meth) {
				continue // a Connect call (see httpHandler), not REST
			}
			rule = &annotations.HttpRule{Pattern: &annotations.HttpRule_Post{Post: meth.Path}, Body: "*"}
		}
		for _, r := range append([]*annotations.HttpRule{rule}, rule.GetAdditionalBindings()...) {
			if err := q.add(meth, r); err != nil {
				return nil, fmt.Errorf("%s: %w", meth.Path, err)
			}
		}
	}
	return q, nil
}

func (q *restQueries) add(m *model.Method, rule *annotations.HttpRule) error {
	var method, template string
	switch p := rule.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		method, template = http.MethodGet, p.Get
	case *annotations.HttpRule_Put:
		method, template = http.MethodPut, p.Put
	case *annotations.HttpRule_Post:
		method, template = http.MethodPost, p.Post
	case *annotations.HttpRule_Delete:
		method, template = http.MethodDelete, p.Delete
	case *annotations.HttpRule_Patch:
		method, template = http.MethodPatch, p.Patch
	case *annotations.HttpRule_Custom:
		method, template = p.Custom.GetKind(), p.Custom.GetPath()
	default:
		return fmt.Errorf("http rule without a pattern")
	}
	segments, verb, vars, err := parseTemplate(template)
	if err != nil {
		return fmt.Errorf("path template %q: %w", template, err)
	}
	in := m.Desc.Input()
	br := &boundRule{method: m, pattern: method + " " + template, input: in, allBody: rule.GetBody() == "*"}
	for _, v := range vars {
		fields := fieldPath(in, v, false)
		if fields == nil {
			return fmt.Errorf("path variable %q is not a field of %s", v, in.FullName())
		}
		br.bound = append(br.bound, boundField{fields: fields, by: "the path"})
	}
	if body := rule.GetBody(); body != "" && body != "*" {
		fields := fieldPath(in, body, false)
		if fields == nil {
			return fmt.Errorf("body %q is not a field of %s", body, in.FullName())
		}
		br.bound = append(br.bound, boundField{fields: fields, by: "the body"})
	}
	n := &q.root
	for _, s := range segments {
		if n.children[s] == nil {
			if n.children == nil {
				n.children = map[string]*routeNode{}
			}
			n.children[s] = &routeNode{}
		}
		n = n.children[s]
	}
	if n.verbs == nil {
		n.verbs = map[string]map[string]*boundRule{}
	}
	if n.verbs[verb] == nil {
		n.verbs[verb] = map[string]*boundRule{}
	}
	if n.verbs[verb][method] == nil { // a duplicate fails vanguard's transcoder already
		n.verbs[verb][method] = br
	}
	return nil
}

// refused answers r 400 and returns true if it is a REST request whose
// query sets a field its rule binds elsewhere.
func (q *restQueries) refused(w http.ResponseWriter, r *http.Request) bool {
	err := q.check(r)
	if err == nil {
		return false
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = io.WriteString(w, err.Error())
	return true
}

func (q *restQueries) check(r *http.Request) error {
	if r.URL.RawQuery == "" || !vanguardREST(r) {
		return nil
	}
	query := r.URL.Query()
	if len(query) == 0 {
		return nil
	}
	rule := q.match(r.URL.Path, r.Method)
	if rule == nil {
		return nil // vanguard answers 404 or 405
	}
	keys := slices.Sorted(maps.Keys(query))
	if rule.allBody {
		return fmt.Errorf("%s takes no query parameters (got %q): its body carries every field the path does not bind", rule.pattern, keys[0])
	}
	for _, key := range keys {
		fields := fieldPath(rule.input, key, true)
		if fields == nil {
			continue // not a field: vanguard refuses it
		}
		for _, b := range rule.bound {
			if overlap(fields, b.fields) {
				names := make([]string, len(b.fields))
				for i, f := range b.fields {
					names[i] = string(f.Name())
				}
				return fmt.Errorf("query parameter %q overrides %s, which %s of %s binds", key, strings.Join(names, "."), b.by, rule.pattern)
			}
		}
	}
	return nil
}

// match finds the rule vanguard serves a request for path with method by.
func (q *restQueries) match(path, method string) *boundRule {
	if path == "" || path[0] != '/' || path[len(path)-1] == ':' {
		return nil
	}
	parts := strings.Split(path[1:], "/")
	verb := ""
	if last := parts[len(parts)-1]; strings.Contains(last, ":") {
		parts[len(parts)-1], verb, _ = strings.Cut(last, ":")
	}
	rule, _ := q.root.find(parts, verb, method)
	return rule
}

// find returns the rule for parts, verb and method; matched tells that the
// path and verb matched a node, whether or not the method did (vanguard
// then answers 405 rather than trying the wildcards).
func (n *routeNode) find(parts []string, verb, method string) (rule *boundRule, matched bool) {
	if len(parts) == 0 {
		methods := n.verbs[verb]
		if r := methods[method]; r != nil {
			return r, true
		}
		if r := methods["*"]; r != nil {
			return r, true
		}
		return nil, methods != nil
	}
	for _, key := range []string{parts[0], "*"} {
		if c := n.children[key]; c != nil {
			if r, ok := c.find(parts[1:], verb, method); r != nil || ok {
				return r, ok
			}
		}
	}
	if c := n.children["**"]; c != nil {
		return c.find(nil, verb, method)
	}
	return nil, false
}

// overlap tells whether setting field path a changes what field path b
// holds: one is a prefix of the other, or they part at two fields of one
// oneof (setting one clears the other).
func overlap(a, b []protoreflect.FieldDescriptor) bool {
	for i := range min(len(a), len(b)) {
		if a[i].FullName() != b[i].FullName() {
			oa, ob := a[i].ContainingOneof(), b[i].ContainingOneof()
			return oa != nil && ob != nil && !oa.IsSynthetic() && oa.FullName() == ob.FullName()
		}
	}
	return true
}

// fieldPath resolves a dotted field path in msg as vanguard does (JSON
// names first when fromJSON, as for query parameters); nil if it does not
// name a field.
func fieldPath(msg protoreflect.MessageDescriptor, path string, fromJSON bool) []protoreflect.FieldDescriptor {
	var out []protoreflect.FieldDescriptor
	for part := range strings.SplitSeq(path, ".") {
		if msg == nil {
			return nil
		}
		var f protoreflect.FieldDescriptor
		if fromJSON {
			f = msg.Fields().ByJSONName(part)
		}
		if f == nil {
			f = msg.Fields().ByName(protoreflect.Name(part))
		}
		if f == nil {
			return nil
		}
		out = append(out, f)
		msg = nil
		if f.Cardinality() != protoreflect.Repeated {
			msg = f.Message()
		}
	}
	return out
}

// vanguardREST tells whether vanguard takes r for a REST call rather than
// one of the RPC protocols (its classifyRequest): the query check and the
// choice of the REST transcoder (server streams) both use it.
func vanguardREST(r *http.Request) bool {
	connect := func() bool {
		v := r.Header["Connect-Protocol-Version"]
		return (len(v) == 1 && v[0] == "1") || r.URL.Query().Get("connect") == "v1"
	}
	cts := r.Header["Content-Type"]
	switch {
	case len(cts) == 0:
		return !connect()
	case len(cts) > 1:
		return false
	}
	ct := cts[0]
	switch {
	case strings.HasPrefix(ct, "application/connect+"),
		ct == "application/grpc", strings.HasPrefix(ct, "application/grpc+"),
		ct == "application/grpc-web", strings.HasPrefix(ct, "application/grpc-web+"):
		return false
	case strings.HasPrefix(ct, "application/"):
		return !connect()
	}
	return true
}

// parseTemplate reads a google.api.http path template,
//
//	Template = "/" Segments [ ":" LITERAL ] ;
//	Segments = Segment { "/" Segment } ;
//	Segment  = "*" | "**" | LITERAL | "{" FieldPath [ "=" Segments ] "}" ;
//
// into the segments vanguard routes by (literals escaped as it keeps them,
// a variable as its own segments, "*" by default), the verb and the
// variables' field paths.
func parseTemplate(t string) (segments []string, verb string, vars []string, err error) {
	p := &templateParser{s: t}
	if !p.consume('/') {
		return nil, "", nil, errors.New("must start with /")
	}
	if err := p.segments(); err != nil {
		return nil, "", nil, err
	}
	if p.consume(':') {
		if verb, err = p.literal(); err != nil {
			return nil, "", nil, err
		}
	}
	if p.i != len(p.s) {
		return nil, "", nil, fmt.Errorf("unexpected %q at %d", p.s[p.i:], p.i)
	}
	return p.segs, verb, p.vars, nil
}

type templateParser struct {
	s    string
	i    int
	segs []string
	vars []string
}

func (p *templateParser) consume(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *templateParser) segments() error {
	for {
		if err := p.segment(); err != nil {
			return err
		}
		if !p.consume('/') {
			return nil
		}
	}
}

func (p *templateParser) segment() error {
	switch {
	case p.consume('*'):
		if p.consume('*') {
			p.segs = append(p.segs, "**")
		} else {
			p.segs = append(p.segs, "*")
		}
	case p.consume('{'):
		start := p.i
		for p.i < len(p.s) && (isUnreserved(p.s[p.i]) && p.s[p.i] != '-' && p.s[p.i] != '~') {
			p.i++
		}
		if p.i == start {
			return fmt.Errorf("expected a field path at %d", start)
		}
		p.vars = append(p.vars, p.s[start:p.i])
		if p.consume('=') {
			if err := p.segments(); err != nil {
				return err
			}
		} else {
			p.segs = append(p.segs, "*")
		}
		if !p.consume('}') {
			return fmt.Errorf("expected } at %d", p.i)
		}
	default:
		lit, err := p.literal()
		if err != nil {
			return err
		}
		p.segs = append(p.segs, lit)
	}
	return nil
}

// literal reads a literal segment and returns it as vanguard keeps it:
// unescaped, then every byte but the unreserved ones escaped.
func (p *templateParser) literal() (string, error) {
	start := p.i
	for p.i < len(p.s) && (isUnreserved(p.s[p.i]) || p.s[p.i] == '%') {
		p.i++
	}
	if p.i == start {
		return "", fmt.Errorf("expected a path segment at %d", start)
	}
	raw, err := url.PathUnescape(p.s[start:p.i])
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for i := range len(raw) {
		if c := raw[i]; isUnreserved(c) {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String(), nil
}

// isUnreserved: [-_.~0-9a-zA-Z].
func isUnreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' || c == '~'
}
