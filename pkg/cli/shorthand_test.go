package cli

import (
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	orchv1 "orch/proto/orch/v1"
)

func TestParseShorthand(t *testing.T) {
	tests := []struct {
		in      string
		want    map[string]any
		wantErr string
	}{
		{in: "a=1", want: map[string]any{"a": "1"}},
		{in: "a=1,b=x y", want: map[string]any{"a": "1", "b": "x y"}},
		{in: " a = 1 , b = 2 ", want: map[string]any{"a": "1", "b": "2"}},
		{in: "a={b=1,c={d=true}},e=2", want: map[string]any{"a": map[string]any{"b": "1", "c": map[string]any{"d": "true"}}, "e": "2"}},
		{in: "a=[1,2],b=[],c=[{k=v},{k=w}]", want: map[string]any{"a": []any{"1", "2"}, "b": []any(nil), "c": []any{map[string]any{"k": "v"}, map[string]any{"k": "w"}}}},
		{in: `a='x,y={z}',b="it's"`, want: map[string]any{"a": "x,y={z}", "b": "it's"}},
		{in: "a=", want: map[string]any{"a": ""}},
		{in: "", wantErr: "expected a key"},
		{in: "a", wantErr: `expected '=' after "a"`},
		{in: "a=1,", wantErr: "expected a key"},
		{in: "a=1,a=2", wantErr: `"a" given twice`},
		{in: "a={b=1", wantErr: "missing '}'"},
		{in: "a=[1,2", wantErr: "missing ']'"},
		{in: "a='x", wantErr: "missing closing '"},
		{in: "a=b=c", wantErr: `unexpected '=' in a value`},
		{in: "a=1}", wantErr: `expected ',' after the value of "a"`},
		{in: "a={b=1}x", wantErr: `expected ',' after the value of "a"`},
	}
	for _, tt := range tests {
		got, err := parseShorthand(tt.in)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseShorthand(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("parseShorthand(%q): %v", tt.in, err)
		case !reflect.DeepEqual(got, tt.want):
			t.Errorf("parseShorthand(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
}

// setShorthand fills any message by its fields' JSON names: nested messages, lists of scalars
// and of messages, optional scalars (set even when zero).
func TestSetShorthand(t *testing.T) {
	tests := []struct {
		in      string
		msg     proto.Message
		want    proto.Message
		wantErr string
	}{
		{
			in:   "maximumPercent=200,minimumHealthyPercent=0,deploymentCircuitBreaker={enable=TRUE,rollback=false}",
			msg:  &orchv1.DeploymentConfiguration{},
			want: &orchv1.DeploymentConfiguration{MaximumPercent: i32(200), MinimumHealthyPercent: i32(0), DeploymentCircuitBreaker: &orchv1.DeploymentCircuitBreaker{Enable: true}},
		},
		{
			in:   "cluster=prod,services=[web,api]",
			msg:  &orchv1.DescribeServicesRequest{},
			want: &orchv1.DescribeServicesRequest{Cluster: "prod", Services: []string{"web", "api"}},
		},
		{
			in:   "services=web",
			msg:  &orchv1.DescribeServicesRequest{},
			want: &orchv1.DescribeServicesRequest{Services: []string{"web"}},
		},
		{
			in:   "tags=[{key=a,value=b},{key=c}],placementStrategy=[{type=spread,field=instanceId}]",
			msg:  &orchv1.CreateServiceRequest{},
			want: &orchv1.CreateServiceRequest{Tags: []*orchv1.Tag{{Key: "a", Value: "b"}, {Key: "c"}}, PlacementStrategy: []*orchv1.PlacementStrategy{{Type: "spread", Field: "instanceId"}}},
		},
		{in: "maximum_percent=1", msg: &orchv1.DeploymentConfiguration{}, wantErr: `unknown parameter "maximum_percent", must be one of: maximumPercent, minimumHealthyPercent, deploymentCircuitBreaker`},
		{in: "maximumPercent=3000000000", msg: &orchv1.DeploymentConfiguration{}, wantErr: `maximumPercent: invalid integer "3000000000"`},
		{in: "deploymentCircuitBreaker={enable=yes}", msg: &orchv1.DeploymentConfiguration{}, wantErr: `deploymentCircuitBreaker.enable: invalid boolean (true or false) "yes"`},
		{in: "deploymentCircuitBreaker=on", msg: &orchv1.DeploymentConfiguration{}, wantErr: "deploymentCircuitBreaker: expected a structure {key=value,...}"},
		{in: "maximumPercent={a=1}", msg: &orchv1.DeploymentConfiguration{}, wantErr: "maximumPercent: expected a single value"},
		{in: "tags=[{key=a},x]", msg: &orchv1.CreateServiceRequest{}, wantErr: "tags[1]: expected a structure"},
	}
	for _, tt := range tests {
		vals, err := parseShorthand(tt.in)
		if err != nil {
			t.Fatalf("parseShorthand(%q): %v", tt.in, err)
		}
		err = setShorthand(tt.msg.ProtoReflect(), vals, "")
		switch {
		case tt.wantErr != "":
			if err == nil || err.Error() != tt.wantErr && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: error %v, want %q", tt.in, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("%q: %v", tt.in, err)
		case !proto.Equal(tt.msg, tt.want):
			t.Errorf("%q: got %v, want %v", tt.in, tt.msg, tt.want)
		}
	}
}
