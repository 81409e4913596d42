package taskdef

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	orchv1 "orch/proto/orch/v1"
)

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// roundTrip checks that Marshal's output parses back to an equal message and that a second
// Marshal gives the same bytes.
func roundTrip(t *testing.T, td *orchv1.TaskDefinition) {
	t.Helper()
	out, err := Marshal(td)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	back, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse(Marshal(td)): %v\n%s", err, out)
	}
	if !proto.Equal(td, back) {
		t.Fatalf("round trip changed the task definition:\nbefore %v\nafter  %v", td, back)
	}
	again, err := Marshal(back)
	if err != nil {
		t.Fatalf("Marshal again: %v", err)
	}
	if string(again) != string(out) {
		t.Fatalf("Marshal is not stable:\n%s\n---\n%s", out, again)
	}
}

func TestParseExamples(t *testing.T) {
	tests := []struct {
		file  string
		check func(t *testing.T, td *orchv1.TaskDefinition)
	}{
		{"webserver_fargate.json", func(t *testing.T, td *orchv1.TaskDefinition) {
			if td.Family != "fargate-task-definition" || td.Cpu != "256" || td.Memory != "512" || td.NetworkMode != "awsvpc" {
				t.Errorf("task fields: %v", td)
			}
			c := td.ContainerDefinitions[0]
			if c.Image != "public.ecr.aws/docker/library/httpd:2.4" || len(c.EntryPoint) != 2 || c.LogConfiguration.Options["awslogs-region"] != "us-east-1" {
				t.Errorf("container: %v", c)
			}
			if td.RuntimePlatform.GetOperatingSystemFamily() != "LINUX" {
				t.Errorf("runtimePlatform: %v", td.RuntimePlatform)
			}
		}},
		{"windows_iis_fargate.json", func(t *testing.T, td *orchv1.TaskDefinition) {
			if td.ContainerDefinitions[0].GetMemory() != 4096 || td.Memory != "4096" {
				t.Errorf("memory: %v", td)
			}
		}},
		{"ecr_iam_role.json", func(t *testing.T, td *orchv1.TaskDefinition) {
			if td.TaskRoleArn != "arn:aws:iam::123456789012:role/AmazonECSTaskS3BucketRole" {
				t.Errorf("taskRoleArn: %q", td.TaskRoleArn)
			}
		}},
		{"entrypoint_ping.json", func(t *testing.T, td *orchv1.TaskDefinition) {
			c := td.ContainerDefinitions[0]
			if !c.ReadonlyRootFilesystem || c.Cpu != 16 || !slices.Equal(c.Command, []string{"-c", "4", "google.com"}) {
				t.Errorf("container: %v", c)
			}
		}},
		{"wordpress_links.json", func(t *testing.T, td *orchv1.TaskDefinition) {
			if !slices.Equal(td.ContainerDefinitions[0].Links, []string{"mysql"}) || td.NetworkMode != "" {
				t.Errorf("links: %v", td.ContainerDefinitions[0])
			}
		}},
		{"web_timer_volumes.json", func(t *testing.T, td *orchv1.TaskDefinition) {
			if td.Volumes[0].Host.GetSourcePath() != "/ecs/webdata" || !td.ContainerDefinitions[0].MountPoints[0].ReadOnly {
				t.Errorf("volumes: %v", td)
			}
		}},
		{"sleep360_register_output.json", func(t *testing.T, td *orchv1.TaskDefinition) {
			want := &orchv1.TaskDefinition{
				Family: "sleep360",
				ContainerDefinitions: []*orchv1.ContainerDefinition{{
					Name: "sleep", Image: "busybox", Cpu: 10, Memory: proto.Int32(10),
					Essential: proto.Bool(true), Command: []string{"sleep", "360"},
				}},
			}
			if !proto.Equal(td, want) {
				t.Errorf("got %v, want %v", td, want)
			}
		}},
		{"describe_fargate.json", func(t *testing.T, td *orchv1.TaskDefinition) {
			if td.TaskDefinitionArn != "" || td.Revision != 0 || td.Status != "" || td.RegisteredAt != nil ||
				td.RegisteredBy != "" || len(td.Compatibilities) != 0 || len(td.RequiresAttributes) != 0 {
				t.Errorf("output-only fields kept: %v", td)
			}
			if len(td.Tags) != 2 || td.Tags[1].Key != "Stack" {
				t.Errorf("tags from the wrapper: %v", td.Tags)
			}
			efs := td.Volumes[0].EfsVolumeConfiguration.AsMap()
			if efs["fileSystemId"] != "fs-086241f1f8077a83d" {
				t.Errorf("efsVolumeConfiguration: %v", efs)
			}
			if td.EnableFaultInjection == nil || *td.EnableFaultInjection {
				t.Errorf("enableFaultInjection: %v", td.EnableFaultInjection)
			}
			if hc := td.ContainerDefinitions[0].HealthCheck; hc.Interval != 30 || hc.Retries != 3 {
				t.Errorf("healthCheck: %v", hc)
			}
		}},
		{"console_nulls.json", func(t *testing.T, td *orchv1.TaskDefinition) {
			c := td.ContainerDefinitions[0]
			if c.Memory != nil || c.LinuxParameters != nil || c.HealthCheck != nil || td.ExecutionRoleArn != "" {
				t.Errorf("nulls should leave fields unset: %v", td)
			}
		}},
		{"sidecars_linux.json", func(t *testing.T, td *orchv1.TaskDefinition) {
			app := td.ContainerDefinitions[1]
			lp := app.LinuxParameters
			if lp.GetInitProcessEnabled() != true || lp.GetMaxSwap() != 0 || lp.MaxSwap == nil || lp.Tmpfs[0].Size != 64 {
				t.Errorf("linuxParameters: %v", lp)
			}
			if app.Ulimits[1].SoftLimit != -1 || app.GetStopTimeout() != 60 || len(app.DependsOn) != 2 {
				t.Errorf("container: %v", app)
			}
			if Essential(td.ContainerDefinitions[0]) {
				t.Errorf("migrate should not be essential")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			td, err := Parse(readFixture(t, tt.file))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tt.check(t, td)
			roundTrip(t, td)
		})
	}
}

// The AWS docs' container dependency example sets no memory anywhere; ECS refuses it for the
// EC2 launch type ("At least one of 'memory' or 'memoryReservation' must be specified"), and
// so does orch. With task-level memory it is accepted.
func TestParseContainerDependencyExample(t *testing.T) {
	data := readFixture(t, "container_dependency.json")
	_, err := Parse(data)
	want := []FieldError{
		{"containerDefinitions[0].memory", "required: set memory or memoryReservation, or the task's memory"},
		{"containerDefinitions[1].memory", "required: set memory or memoryReservation, or the task's memory"},
	}
	assertFieldErrors(t, err, want)

	fixed := strings.Replace(string(data), `"networkMode": "awsvpc"`, `"networkMode": "awsvpc", "cpu": ".5 vCPU", "memory": "1 GB"`, 1)
	td, err := Parse([]byte(fixed))
	if err != nil {
		t.Fatalf("with task memory: %v", err)
	}
	if td.Cpu != "512" || td.Memory != "1024" {
		t.Errorf("cpu, memory = %q, %q; want 512, 1024", td.Cpu, td.Memory)
	}
	if props := td.ProxyConfiguration.AsMap()["properties"].([]any); len(props) != 5 {
		t.Errorf("proxyConfiguration.properties: %v", props)
	}
	roundTrip(t, td)
}

// Every field of the CLI's generate-cli-skeleton output is a field orch knows, so the
// skeleton decodes without an unknown-field error (its empty values then fail validation).
func TestParseCLISkeletonKnowsEveryField(t *testing.T) {
	v, err := readJSON(readFixture(t, "cli_skeleton.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, errs := decode(v); len(errs) != 0 {
		t.Fatalf("decode: %v", &ValidationError{Errors: errs})
	}
}

func TestParseUnits(t *testing.T) {
	tests := []struct {
		name, cpu, memory string // JSON values
		wantCPU, wantMem  string
		wantErr           []FieldError
	}{
		{name: "numbers", cpu: `256`, memory: `512`, wantCPU: "256", wantMem: "512"},
		{name: "strings", cpu: `"1024"`, memory: `"2048"`, wantCPU: "1024", wantMem: "2048"},
		{name: "vCPU", cpu: `"1 vCPU"`, memory: `"1 GB"`, wantCPU: "1024", wantMem: "1024"},
		{name: "lowercase, no space", cpu: `"2vcpu"`, memory: `"2gb"`, wantCPU: "2048", wantMem: "2048"},
		{name: "fractions", cpu: `"0.25 vCPU"`, memory: `"0.5 GB"`, wantCPU: "256", wantMem: "512"},
		{name: "leading dot", cpu: `".125 vcpu"`, memory: `"1.5GB"`, wantCPU: "128", wantMem: "1536"},
		{name: "MiB and GiB", cpu: `"4 vCPU"`, memory: `"512 MiB"`, wantCPU: "4096", wantMem: "512"},
		{name: "GiB", cpu: `"8 VCPU"`, memory: `"16 GiB"`, wantCPU: "8192", wantMem: "16384"},
		{name: "empty means unset", cpu: `""`, memory: `""`, wantCPU: "", wantMem: ""},
		{name: "whole float", cpu: `512.0`, memory: `1024.0`, wantCPU: "512", wantMem: "1024"},
		{name: "garbage", cpu: `"fast"`, memory: `"lots"`, wantErr: []FieldError{
			{"cpu", `expected cpu units, e.g. 256 or "1 vCPU"; got string "fast"`},
			{"memory", `expected MiB, e.g. 512 or "1 GB"; got string "lots"`},
		}},
		{name: "fraction of a unit", cpu: `"0.0001 vCPU"`, memory: `0.5`, wantErr: []FieldError{
			{"cpu", `0.0001 vCPU is not a whole number of cpu units`},
			{"memory", `0.5 is not a whole number of MiB`},
		}},
		{name: "wrong JSON type", cpu: `true`, memory: `{}`, wantErr: []FieldError{
			{"cpu", `expected a number or string, got true`},
			{"memory", `expected a number or string, got an object`},
		}},
		{name: "negative", cpu: `-256`, memory: `"0"`, wantErr: []FieldError{
			{"cpu", `must be a positive integer (cpu units), got "-256"`},
			{"memory", `must be a positive integer (MiB), got "0"`},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := `{"family": "f", "cpu": ` + tt.cpu + `, "memory": ` + tt.memory + `,
				"containerDefinitions": [{"name": "c", "image": "busybox", "memory": 64}]}`
			td, err := Parse([]byte(doc))
			if tt.wantErr != nil {
				assertFieldErrors(t, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if td.Cpu != tt.wantCPU || td.Memory != tt.wantMem {
				t.Errorf("cpu, memory = %q, %q; want %q, %q", td.Cpu, td.Memory, tt.wantCPU, tt.wantMem)
			}
		})
	}
}

func TestParseFieldErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []FieldError
	}{
		{
			name: "unknown container field",
			doc:  `{"family": "f", "containerDefinitions": [{"name": "c", "imagee": "busybox", "memory": 64}]}`,
			want: []FieldError{{"containerDefinitions[0].imagee", "unknown field"}},
		},
		{
			name: "unknown fields at every level, in document order",
			doc: `{"family": "f", "famliy": "g", "containerDefinitions": [
				{"name": "c", "image": "busybox", "memory": 64, "portMappings": [{"containerPort": 80, "hostport": 80}],
				 "linuxParameters": {"capabilities": {"add": ["NET_ADMIN"], "remove": ["ALL"]}}}],
				"volumes": [{"name": "v", "host": {"path": "/x"}}]}`,
			want: []FieldError{
				{"famliy", "unknown field"},
				{"containerDefinitions[0].portMappings[0].hostport", "unknown field"},
				{"containerDefinitions[0].linuxParameters.capabilities.remove", "unknown field"},
				{"volumes[0].host.path", "unknown field"},
			},
		},
		{
			name: "proto names are not ECS names",
			doc:  `{"family": "f", "container_definitions": []}`,
			want: []FieldError{{"container_definitions", "unknown field"}},
		},
		{
			name: "unknown field inside the describe wrapper",
			doc:  `{"taskDefinition": {"family": "f", "containerDefinitions": [{"name": "c", "image": "i", "memory": 64, "imageDigest": "x"}]}, "nextToken": "x"}`,
			want: []FieldError{
				{"taskDefinition.containerDefinitions[0].imageDigest", "unknown field"},
				{"nextToken", "unknown field"},
			},
		},
		{
			name: "wrong JSON types",
			doc: `{"family": 7, "containerDefinitions": [{"name": "c", "image": "i", "memory": "lots",
				"essential": "yes", "command": "echo hi", "environment": [{"name": "PORT", "value": 8080}],
				"dockerLabels": {"a": 1}, "portMappings": [{"containerPort": 80.5}], "healthCheck": ["CMD"]}],
				"volumes": [{"name": "v", "efsVolumeConfiguration": "fs-1"}]}`,
			want: []FieldError{
				{"family", "expected a string, got number 7"},
				{"containerDefinitions[0].memory", `expected an integer, got string "lots"`},
				{"containerDefinitions[0].essential", `expected true or false, got string "yes"`},
				{"containerDefinitions[0].command", `expected an array, got string "echo hi"`},
				{"containerDefinitions[0].environment[0].value", "expected a string, got number 8080"},
				{"containerDefinitions[0].dockerLabels.a", "expected a string, got number 1"},
				{"containerDefinitions[0].portMappings[0].containerPort", "expected an integer, got number 80.5"},
				{"containerDefinitions[0].healthCheck", "expected an object, got an array"},
				{"volumes[0].efsVolumeConfiguration", `expected an object, got string "fs-1"`},
			},
		},
		{
			name: "out of range integer",
			doc:  `{"family": "f", "containerDefinitions": [{"name": "c", "image": "i", "memory": 99999999999}]}`,
			want: []FieldError{{"containerDefinitions[0].memory", "99999999999 is out of range"}},
		},
		{
			name: "duplicate keys",
			doc:  `{"family": "f", "family": "g", "containerDefinitions": [{"name": "c", "image": "i", "memory": 64, "dockerLabels": {"a": "1", "a": "2"}}]}`,
			want: []FieldError{
				{"family", "duplicate field"},
				{"containerDefinitions[0].dockerLabels.a", "duplicate key"},
			},
		},
		{
			name: "not an object",
			doc:  `[{"family": "f"}]`,
			want: []FieldError{{"", "expected a JSON object, got an array"}},
		},
		{
			name: "taskDefinition not an object",
			doc:  `{"taskDefinition": "web:3"}`,
			want: []FieldError{{"taskDefinition", `expected an object, got string "web:3"`}},
		},
		{
			name: "free-form struct not an object",
			doc:  `{"family": "f", "proxyConfiguration": [], "containerDefinitions": [{"name": "c", "image": "i", "memory": 64}]}`,
			want: []FieldError{{"proxyConfiguration", "expected an object, got an array"}},
		},
		{
			name: "tags in both places",
			doc:  `{"taskDefinition": {"family": "f", "tags": [{"key": "a"}], "containerDefinitions": [{"name": "c", "image": "i", "memory": 64}]}, "tags": [{"key": "b"}]}`,
			want: []FieldError{{"tags", "given both here and inside taskDefinition"}},
		},
		{
			name: "validation paths inside the wrapper",
			doc:  `{"taskDefinition": {"family": "f", "containerDefinitions": [{"name": "c", "memory": 64}]}, "tags": [{"key": ""}]}`,
			want: []FieldError{
				{"taskDefinition.containerDefinitions[0].image", "required"},
				{"tags[0].key", "required"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			assertFieldErrors(t, err, tt.want)
		})
	}
}

func TestParseNumericStrings(t *testing.T) {
	doc := `{"family": "f", "containerDefinitions": [{"name": "c", "image": "i", "cpu": "128", "memory": "512",
		"memoryReservation": " 256 ", "portMappings": [{"containerPort": "80", "hostPort": "8080"}], "stopTimeout": 1e1}]}`
	td, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	c := td.ContainerDefinitions[0]
	if c.Cpu != 128 || c.GetMemory() != 512 || c.GetMemoryReservation() != 256 || c.PortMappings[0].HostPort != 8080 || c.GetStopTimeout() != 10 {
		t.Errorf("got %v", c)
	}
}

func TestParseMalformed(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"empty", "", "invalid task definition: empty document"},
		{"whitespace only", "  \n ", "invalid task definition: empty document"},
		{"missing comma", "{\n  \"family\": \"f\"\n  \"cpu\": \"256\"\n}", "line 3, column 3: invalid character '\"' after object key:value pair"},
		{"trailing comma", "{\"family\": \"f\",}", "line 1, column 16: invalid character '}' looking for beginning of object key string"},
		{"truncated", "{\n \"family\": \"f\",\n \"containerDefinitions\": [", "line 3, column 27: unexpected end of input"},
		{"bad literal", "{\"essential\": ture}", "line 1, column 16: invalid character 'u' in literal true (expecting 'r')"},
		{"trailing data", "{} {}", "line 1, column 4: invalid character '{' after top-level value"},
		{"too deep", `{"family": "f", "proxyConfiguration": ` + strings.Repeat(`{"a": `, 70) + `1` + strings.Repeat(`}`, 70) + `}`, "nested more than 64 levels deep"},
		{"single quotes", "{'family': 'f'}", "line 1, column 2: invalid character '\\'' looking for beginning of object key string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\nwant it to contain %q", err, tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not match ErrInvalid", err)
			}
		})
	}
}

func TestMarshalFormat(t *testing.T) {
	td := &orchv1.TaskDefinition{
		Family:      "web",
		Cpu:         "256",
		NetworkMode: "awsvpc",
		ContainerDefinitions: []*orchv1.ContainerDefinition{{
			Name: "web", Image: "nginx", Memory: proto.Int32(128), Essential: proto.Bool(false),
			PortMappings: []*orchv1.PortMapping{{ContainerPort: 80}},
		}},
	}
	got, err := Marshal(td)
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "containerDefinitions": [
    {
      "name": "web",
      "image": "nginx",
      "memory": 128,
      "portMappings": [
        {
          "containerPort": 80
        }
      ],
      "essential": false
    }
  ],
  "family": "web",
  "networkMode": "awsvpc",
  "cpu": "256"
}`
	if string(got) != want {
		t.Errorf("Marshal:\n%s\nwant:\n%s", got, want)
	}
}

func TestParseRef(t *testing.T) {
	tests := []struct {
		in      string
		family  string
		rev     int32
		wantErr bool
	}{
		{in: "web", family: "web"},
		{in: "web:3", family: "web", rev: 3},
		{in: "hello_world-2:12", family: "hello_world-2", rev: 12},
		{in: "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3", family: "web", rev: 3},
		{in: "arn:aws:ecs:local:000000000000:task-definition/web", family: "web"},
		{in: "arn:aws-cn:ecs:cn-north-1:123456789012:task-definition/web:1", family: "web", rev: 1},
		{in: "", wantErr: true},
		{in: "web:", wantErr: true},
		{in: "web:0", wantErr: true},
		{in: "web:-1", wantErr: true},
		{in: "web:latest", wantErr: true},
		{in: "web:1:2", wantErr: true},
		{in: "my web", wantErr: true},
		{in: "arn:aws:ecs:us-east-1:123456789012:service/cluster/web", wantErr: true},
		{in: "arn:aws:s3:us-east-1:123456789012:task-definition/web:1", wantErr: true},
		{in: "arn:aws:ecs:us-east-1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			family, rev, err := ParseRef(tt.in)
			if tt.wantErr {
				if err == nil || !errors.Is(err, ErrInvalid) {
					t.Fatalf("ParseRef(%q) = %q, %d, %v; want an ErrInvalid error", tt.in, family, rev, err)
				}
				return
			}
			if err != nil || family != tt.family || rev != tt.rev {
				t.Fatalf("ParseRef(%q) = %q, %d, %v; want %q, %d", tt.in, family, rev, err, tt.family, tt.rev)
			}
		})
	}
}

func assertFieldErrors(t *testing.T, err error, want []FieldError) {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T), want a *ValidationError with %v", err, err, want)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("error does not match ErrInvalid")
	}
	if !slices.Equal(ve.Errors, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", ve, &ValidationError{Errors: want})
	}
}
