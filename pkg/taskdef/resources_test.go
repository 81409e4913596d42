package taskdef

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	orchv1 "orch/proto/orch/v1"
)

func TestEssentialAndStopTimeout(t *testing.T) {
	tests := []struct {
		name      string
		c         *orchv1.ContainerDefinition
		essential bool
		stop      time.Duration
	}{
		{"unset", &orchv1.ContainerDefinition{}, true, 30 * time.Second},
		{"nil", nil, true, 30 * time.Second},
		{"set true, 5s", &orchv1.ContainerDefinition{Essential: proto.Bool(true), StopTimeout: proto.Int32(5)}, true, 5 * time.Second},
		{"set false, 120s", &orchv1.ContainerDefinition{Essential: proto.Bool(false), StopTimeout: proto.Int32(120)}, false, 120 * time.Second},
		{"stop timeout 0 is the default", &orchv1.ContainerDefinition{StopTimeout: proto.Int32(0)}, true, 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Essential(tt.c); got != tt.essential {
				t.Errorf("Essential = %v, want %v", got, tt.essential)
			}
			if got := StopTimeout(tt.c); got != tt.stop {
				t.Errorf("StopTimeout = %v, want %v", got, tt.stop)
			}
		})
	}
}

func TestContainerReservation(t *testing.T) {
	tests := []struct {
		name     string
		c        *orchv1.ContainerDefinition
		cpu, mem int
	}{
		{"memory only", &orchv1.ContainerDefinition{Cpu: 128, Memory: proto.Int32(512)}, 128, 512},
		{"reservation wins", &orchv1.ContainerDefinition{Cpu: 10, Memory: proto.Int32(512), MemoryReservation: proto.Int32(128)}, 10, 128},
		{"reservation only", &orchv1.ContainerDefinition{MemoryReservation: proto.Int32(64)}, 0, 64},
		{"neither", &orchv1.ContainerDefinition{Cpu: 5}, 5, 0},
		{"nil", nil, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cpu, mem := ContainerReservation(tt.c)
			if cpu != tt.cpu || mem != tt.mem {
				t.Errorf("ContainerReservation = %d, %d; want %d, %d", cpu, mem, tt.cpu, tt.mem)
			}
		})
	}
}

func TestTaskResources(t *testing.T) {
	containers := []*orchv1.ContainerDefinition{
		{Cpu: 256, Memory: proto.Int32(512), MemoryReservation: proto.Int32(256)},
		{Cpu: 10, Memory: proto.Int32(100)},
	}
	tests := []struct {
		name        string
		cpu, memory string
		wantCPU     int
		wantMem     int
	}{
		{"sum of containers", "", "", 266, 356},
		{"task level", "1024", "2048", 1024, 2048},
		{"task cpu only", "512", "", 512, 356},
		{"task memory only", "", "1024", 266, 1024},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			td := &orchv1.TaskDefinition{Cpu: tt.cpu, Memory: tt.memory, ContainerDefinitions: containers}
			cpu, mem := TaskResources(td)
			if cpu != tt.wantCPU || mem != tt.wantMem {
				t.Errorf("TaskResources = %d, %d; want %d, %d", cpu, mem, tt.wantCPU, tt.wantMem)
			}
		})
	}
}

func TestHostPorts(t *testing.T) {
	mappings := func(pms ...*orchv1.PortMapping) []*orchv1.ContainerDefinition {
		return []*orchv1.ContainerDefinition{{Name: "a", PortMappings: pms}, {Name: "b", PortMappings: []*orchv1.PortMapping{{ContainerPort: 53, Protocol: "udp"}}}}
	}
	tests := []struct {
		name     string
		mode     string
		pms      []*orchv1.PortMapping
		tcp, udp []int32
	}{
		{"bridge: hostPort only, 0 is dynamic", "bridge",
			[]*orchv1.PortMapping{{ContainerPort: 80, HostPort: 8080}, {ContainerPort: 443}}, []int32{8080}, nil},
		{"default mode behaves like bridge", "",
			[]*orchv1.PortMapping{{ContainerPort: 80, HostPort: 80}, {ContainerPort: 9000}}, []int32{80}, nil},
		{"awsvpc: containerPort when hostPort is 0", "awsvpc",
			[]*orchv1.PortMapping{{ContainerPort: 443}, {ContainerPort: 80, HostPort: 80}, {ContainerPort: 80, Protocol: "tcp"}}, []int32{80, 443}, []int32{53}},
		{"host mode", "host",
			[]*orchv1.PortMapping{{ContainerPort: 9090, Protocol: "udp"}, {ContainerPort: 22}}, []int32{22}, []int32{53, 9090}},
		{"awsvpc port range", "awsvpc",
			[]*orchv1.PortMapping{{ContainerPortRange: "7000-7002"}}, []int32{7000, 7001, 7002}, []int32{53}},
		{"bridge port range is dynamic", "bridge",
			[]*orchv1.PortMapping{{ContainerPortRange: "7000-7002"}}, nil, nil},
		{"none binds nothing", "none",
			[]*orchv1.PortMapping{{ContainerPort: 80, HostPort: 80}}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			td := &orchv1.TaskDefinition{NetworkMode: tt.mode, ContainerDefinitions: mappings(tt.pms...)}
			tcp, udp := HostPorts(td)
			if !slices.Equal(tcp, tt.tcp) || !slices.Equal(udp, tt.udp) {
				t.Errorf("HostPorts = %v, %v; want %v, %v", tcp, udp, tt.tcp, tt.udp)
			}
		})
	}
}

// The example definitions give the resources and ports placement will see.
func TestResourcesOfExamples(t *testing.T) {
	tests := []struct {
		file     string
		cpu, mem int
		tcp, udp []int32
	}{
		{"webserver_fargate.json", 256, 512, []int32{80}, nil},
		{"wordpress_links.json", 20, 1000, []int32{80}, nil},
		{"sidecars_linux.json", 256, 544, []int32{8080}, []int32{6379}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			td, err := Parse(readFixture(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			cpu, mem := TaskResources(td)
			tcp, udp := HostPorts(td)
			if cpu != tt.cpu || mem != tt.mem || !slices.Equal(tcp, tt.tcp) || !slices.Equal(udp, tt.udp) {
				t.Errorf("resources %d, %d, ports %v, %v; want %d, %d, %v, %v", cpu, mem, tcp, udp, tt.cpu, tt.mem, tt.tcp, tt.udp)
			}
		})
	}
}
