package taskdef

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	orchv1 "orch/proto/orch/v1"
)

// validTask is a definition that passes Validate and touches most rules: two containers, a
// health check, a dependency, a volume, ports, ulimits, linux parameters.
func validTask() *orchv1.TaskDefinition {
	return &orchv1.TaskDefinition{
		Family:      "web",
		NetworkMode: "bridge",
		Volumes:     []*orchv1.Volume{{Name: "data", Host: &orchv1.HostVolumeProperties{SourcePath: "/srv/data"}}, {Name: "scratch"}},
		ContainerDefinitions: []*orchv1.ContainerDefinition{
			{
				Name: "app", Image: "nginx", Cpu: 256, Memory: proto.Int32(512), MemoryReservation: proto.Int32(256),
				PortMappings: []*orchv1.PortMapping{{ContainerPort: 80, HostPort: 8080, Protocol: "tcp"}},
				DependsOn:    []*orchv1.ContainerDependency{{ContainerName: "db", Condition: "HEALTHY"}},
				MountPoints:  []*orchv1.MountPoint{{SourceVolume: "data", ContainerPath: "/data"}},
				Environment:  []*orchv1.KeyValuePair{{Name: "MODE", Value: "prod"}},
				Secrets:      []*orchv1.Secret{{Name: "TOKEN", ValueFrom: "arn:aws:ssm:local:000000000000:parameter/token"}},
				Ulimits:      []*orchv1.Ulimit{{Name: "nofile", SoftLimit: 1024, HardLimit: 4096}},
				LinuxParameters: &orchv1.LinuxParameters{
					Capabilities: &orchv1.KernelCapabilities{Add: []string{"NET_ADMIN"}, Drop: []string{"ALL"}},
					Devices:      []*orchv1.Device{{HostPath: "/dev/fuse", Permissions: []string{"read"}}},
					Tmpfs:        []*orchv1.Tmpfs{{ContainerPath: "/run", Size: 64}},
				},
				LogConfiguration: &orchv1.LogConfiguration{LogDriver: "json-file"},
				StopTimeout:      proto.Int32(10),
			},
			{
				Name: "db", Image: "postgres", Memory: proto.Int32(256),
				HealthCheck: &orchv1.HealthCheck{Command: []string{"CMD-SHELL", "pg_isready"}, Interval: 10, Timeout: 5, Retries: 3},
				VolumesFrom: []*orchv1.VolumeFrom{{SourceContainer: "app"}},
			},
		},
		PlacementConstraints:    []*orchv1.PlacementConstraint{{Type: "memberOf", Expression: "attribute:ecs.os-type == linux"}},
		RequiresCompatibilities: []string{"EC2"},
		Tags:                    []*orchv1.Tag{{Key: "team", Value: "web"}},
	}
}

func TestValidateValid(t *testing.T) {
	if err := Validate(validTask()); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}

func TestValidateRules(t *testing.T) {
	type td = *orchv1.TaskDefinition
	app := func(t td) *orchv1.ContainerDefinition { return t.ContainerDefinitions[0] }
	db := func(t td) *orchv1.ContainerDefinition { return t.ContainerDefinitions[1] }
	const c0, c1 = "containerDefinitions[0]", "containerDefinitions[1]"
	tests := []struct {
		name   string
		mutate func(t td)
		want   []FieldError
	}{
		// task level
		{"family required", func(t td) { t.Family = "" }, []FieldError{{"family", "required"}}},
		{"family charset", func(t td) { t.Family = "web app" }, []FieldError{{"family", nameRule}}},
		{"family length", func(t td) { t.Family = strings.Repeat("a", 256) }, []FieldError{{"family", nameRule}}},
		{"network mode", func(t td) { t.NetworkMode = "overlay" }, []FieldError{{"networkMode", `must be one of none, bridge, awsvpc, host (got "overlay")`}}},
		{"task cpu not a number", func(t td) { t.Cpu = "1 vCPU" }, []FieldError{{"cpu", `must be a positive integer (cpu units), got "1 vCPU"`}}},
		{"task memory zero", func(t td) { t.Memory = "0" }, []FieldError{{"memory", `must be a positive integer (MiB), got "0"`}}},
		{"container memory above task memory", func(t td) { t.Memory = "400" }, []FieldError{
			{c0 + ".memory", "must not exceed the task's memory (400)"},
			{"memory", "must be at least the sum of the containers' memory reservations (512)"},
		}},
		{"reservations above task memory", func(t td) { t.Memory = "511" }, []FieldError{
			{c0 + ".memory", "must not exceed the task's memory (511)"},
			{"memory", "must be at least the sum of the containers' memory reservations (512)"},
		}},
		{"reservations fit exactly", func(t td) { t.Memory = "512" }, nil},
		{"reservation alone above task memory", func(t td) {
			t.Memory = "300"
			app(t).Memory = nil
			app(t).MemoryReservation = proto.Int32(400)
		}, []FieldError{
			{c0 + ".memoryReservation", "must not exceed the task's memory (300)"},
			{"memory", "must be at least the sum of the containers' memory reservations (656)"},
		}},
		{"container cpu above task cpu", func(t td) { t.Cpu = "128"; db(t).Cpu = 64 }, []FieldError{{"cpu", "must be at least the sum of the containers' cpu (320)"}}},
		{"requiresCompatibilities", func(t td) { t.RequiresCompatibilities = []string{"EC2", "LAMBDA"} }, []FieldError{
			{"requiresCompatibilities[1]", `must be one of EC2, FARGATE, EXTERNAL, MANAGED_INSTANCES (got "LAMBDA")`},
		}},
		{"pidMode", func(t td) { t.PidMode = "container" }, []FieldError{{"pidMode", `must be one of host, task (got "container")`}}},
		{"ipcMode", func(t td) { t.IpcMode = "shareable" }, []FieldError{{"ipcMode", `must be one of host, task, none (got "shareable")`}}},
		{"ephemeral storage", func(t td) { t.EphemeralStorage = &orchv1.EphemeralStorage{SizeInGiB: 20} }, []FieldError{{"ephemeralStorage.sizeInGiB", "must be between 21 and 200"}}},
		{"no containers", func(t td) { t.ContainerDefinitions = nil }, []FieldError{{"containerDefinitions", "required: at least one container"}}},
		{"too many containers", func(t td) {
			for i := range 9 {
				t.ContainerDefinitions = append(t.ContainerDefinitions, &orchv1.ContainerDefinition{Name: fmt.Sprintf("x%d", i), Image: "busybox", Memory: proto.Int32(6)})
			}
		}, []FieldError{{"containerDefinitions", "at most 10 containers (got 11)"}}},
		{"no essential container", func(t td) {
			app(t).Essential = proto.Bool(false)
			db(t).Essential = proto.Bool(false)
			app(t).DependsOn = nil
		}, []FieldError{{"containerDefinitions", "at least one container must be essential"}}},
		{"volume name required", func(t td) { t.Volumes[1].Name = "" }, []FieldError{{"volumes[1].name", "required"}}},
		{"volume name charset", func(t td) { t.Volumes[1].Name = "scratch/1" }, []FieldError{{"volumes[1].name", nameRule}}},
		{"volume name unique", func(t td) { t.Volumes[1].Name = "data" }, []FieldError{{"volumes[1].name", `duplicate volume name "data"`}}},
		{"volume host path absolute", func(t td) { t.Volumes[0].Host.SourcePath = "srv/data" }, []FieldError{{"volumes[0].host.sourcePath", "must be an absolute path"}}},
		{"placement constraint type", func(t td) { t.PlacementConstraints[0].Type = "distinctInstance" }, []FieldError{{"placementConstraints[0].type", `must be memberOf (got "distinctInstance")`}}},
		{"placement constraint expression", func(t td) { t.PlacementConstraints[0].Expression = " " }, []FieldError{{"placementConstraints[0].expression", "required"}}},
		{"too many placement constraints", func(t td) {
			for range 10 {
				t.PlacementConstraints = append(t.PlacementConstraints, &orchv1.PlacementConstraint{Type: "memberOf", Expression: "agentConnected == true"})
			}
		}, []FieldError{{"placementConstraints", "at most 10 constraints (got 11)"}}},
		{"tag key required", func(t td) { t.Tags[0].Key = "" }, []FieldError{{"tags[0].key", "required"}}},
		{"tag key length", func(t td) { t.Tags[0].Key = strings.Repeat("k", 129) }, []FieldError{{"tags[0].key", "at most 128 characters"}}},
		{"tag value length", func(t td) { t.Tags[0].Value = strings.Repeat("v", 257) }, []FieldError{{"tags[0].value", "at most 256 characters"}}},
		{"tag key unique", func(t td) { t.Tags = append(t.Tags, &orchv1.Tag{Key: "team"}) }, []FieldError{{"tags[1].key", `duplicate tag key "team"`}}},
		{"too many tags", func(t td) {
			for i := range 50 {
				t.Tags = append(t.Tags, &orchv1.Tag{Key: fmt.Sprintf("k%d", i)})
			}
		}, []FieldError{{"tags", "at most 50 tags (got 51)"}}},

		// container identity and sizes
		{"container name required", func(t td) { db(t).Name = ""; app(t).DependsOn = nil; db(t).VolumesFrom = nil }, []FieldError{{c1 + ".name", "required"}}},
		{"container name charset", func(t td) { db(t).Name = "db.1"; app(t).DependsOn = nil }, []FieldError{{c1 + ".name", nameRule}}},
		{"container name unique", func(t td) { db(t).Name = "app"; app(t).DependsOn = nil; db(t).VolumesFrom = nil }, []FieldError{{c1 + ".name", `duplicate container name "app" (also containerDefinitions[0])`}}},
		{"image required", func(t td) { app(t).Image = " " }, []FieldError{{c0 + ".image", "required"}}},
		{"container cpu negative", func(t td) { app(t).Cpu = -1 }, []FieldError{{c0 + ".cpu", "must not be negative"}}},
		{"memory minimum", func(t td) { db(t).Memory = proto.Int32(4) }, []FieldError{{c1 + ".memory", "must be at least 6 MiB"}}},
		{"memoryReservation minimum", func(t td) { db(t).Memory = nil; db(t).MemoryReservation = proto.Int32(5) }, []FieldError{{c1 + ".memoryReservation", "must be at least 6 MiB"}}},
		{"memory above reservation", func(t td) { app(t).MemoryReservation = proto.Int32(512) }, []FieldError{{c0 + ".memory", "must be greater than memoryReservation (512)"}}},
		{"memory or reservation needed", func(t td) { db(t).Memory = nil }, []FieldError{{c1 + ".memory", "required: set memory or memoryReservation, or the task's memory"}}},
		{"task memory covers containers", func(t td) { db(t).Memory = nil; t.Memory = "1024" }, nil},
		{"repository credentials", func(t td) { app(t).RepositoryCredentials = &orchv1.RepositoryCredentials{} }, []FieldError{{c0 + ".repositoryCredentials.credentialsParameter", "required"}}},

		// ports
		{"containerPort range", func(t td) { app(t).PortMappings[0].ContainerPort = 0 }, []FieldError{{c0 + ".portMappings[0].containerPort", "must be between 1 and 65535"}}},
		{"containerPort too big", func(t td) { app(t).PortMappings[0].ContainerPort = 65536 }, []FieldError{{c0 + ".portMappings[0].containerPort", "must be between 1 and 65535"}}},
		{"hostPort range", func(t td) { app(t).PortMappings[0].HostPort = 70000 }, []FieldError{{c0 + ".portMappings[0].hostPort", "must be between 0 and 65535"}}},
		{"protocol", func(t td) { app(t).PortMappings[0].Protocol = "TCP" }, []FieldError{{c0 + ".portMappings[0].protocol", `must be one of tcp, udp (got "TCP")`}}},
		{"awsvpc hostPort", func(t td) { t.NetworkMode = "awsvpc" }, []FieldError{{c0 + ".portMappings[0].hostPort", "must be 0 or equal to containerPort (80) in awsvpc network mode"}}},
		{"host mode hostPort", func(t td) { t.NetworkMode = "host" }, []FieldError{{c0 + ".portMappings[0].hostPort", "must be 0 or equal to containerPort (80) in host network mode"}}},
		{"awsvpc hostPort equal", func(t td) { t.NetworkMode = "awsvpc"; app(t).PortMappings[0].HostPort = 80 }, nil},
		{"none mode takes no ports", func(t td) { t.NetworkMode = "none" }, []FieldError{{c0 + ".portMappings", "not allowed in none network mode"}}},
		{"duplicate host port across containers", func(t td) {
			db(t).PortMappings = []*orchv1.PortMapping{{ContainerPort: 5432, HostPort: 8080}}
		}, []FieldError{{c1 + ".portMappings[0].hostPort", "host port 8080/tcp is already used by containerDefinitions[0].portMappings[0]"}}},
		{"same port, other protocol", func(t td) {
			db(t).PortMappings = []*orchv1.PortMapping{{ContainerPort: 5432, HostPort: 8080, Protocol: "udp"}}
		}, nil},
		{"bridge dynamic ports do not clash", func(t td) {
			app(t).PortMappings = []*orchv1.PortMapping{{ContainerPort: 80}}
			db(t).PortMappings = []*orchv1.PortMapping{{ContainerPort: 80}}
		}, nil},
		{"awsvpc container ports clash", func(t td) {
			t.NetworkMode = "awsvpc"
			app(t).PortMappings = []*orchv1.PortMapping{{ContainerPort: 80}}
			db(t).PortMappings = []*orchv1.PortMapping{{ContainerPort: 80, HostPort: 80}}
		}, []FieldError{{c1 + ".portMappings[0].hostPort", "host port 80/tcp is already used by containerDefinitions[0].portMappings[0]"}}},
		{"port range", func(t td) {
			app(t).PortMappings = []*orchv1.PortMapping{{ContainerPortRange: "9000-8000", ContainerPort: 80, HostPort: 80}}
		}, []FieldError{
			{c0 + ".portMappings[0].containerPortRange", "must be a range such as 8000-8010 within 1-65535"},
			{c0 + ".portMappings[0].containerPort", "must not be set with containerPortRange"},
			{c0 + ".portMappings[0].hostPort", "must not be set with containerPortRange"},
		}},

		// links, environment, secrets
		{"links in awsvpc", func(t td) { t.NetworkMode = "awsvpc"; app(t).PortMappings = nil; app(t).Links = []string{"db"} }, []FieldError{{c0 + ".links", "not supported in awsvpc network mode"}}},
		{"link target", func(t td) { app(t).Links = []string{"db:database", "cache"} }, []FieldError{{c0 + ".links[1]", `no container named "cache"`}}},
		{"link to itself", func(t td) { app(t).Links = []string{"app"} }, []FieldError{{c0 + ".links[0]", "a container cannot link to itself"}}},
		{"environment name", func(t td) { app(t).Environment[0].Name = "" }, []FieldError{{c0 + ".environment[0].name", "required"}}},
		{"environment file value", func(t td) { app(t).EnvironmentFiles = []*orchv1.EnvironmentFile{{Type: "s3"}} }, []FieldError{{c0 + ".environmentFiles[0].value", "required"}}},
		{"secret name", func(t td) { app(t).Secrets[0].Name = "" }, []FieldError{{c0 + ".secrets[0].name", "required"}}},
		{"secret valueFrom", func(t td) { app(t).Secrets[0].ValueFrom = "" }, []FieldError{{c0 + ".secrets[0].valueFrom", "required"}}},

		// volumes in containers
		{"mount source volume required", func(t td) { app(t).MountPoints[0].SourceVolume = "" }, []FieldError{{c0 + ".mountPoints[0].sourceVolume", "required"}}},
		{"mount source volume exists", func(t td) { app(t).MountPoints[0].SourceVolume = "logs" }, []FieldError{{c0 + ".mountPoints[0].sourceVolume", `no volume named "logs" in volumes`}}},
		{"mount container path required", func(t td) { app(t).MountPoints[0].ContainerPath = "" }, []FieldError{{c0 + ".mountPoints[0].containerPath", "required"}}},
		{"mount container path absolute", func(t td) { app(t).MountPoints[0].ContainerPath = "data" }, []FieldError{{c0 + ".mountPoints[0].containerPath", "must be an absolute path"}}},
		{"volumesFrom required", func(t td) { db(t).VolumesFrom[0].SourceContainer = "" }, []FieldError{{c1 + ".volumesFrom[0].sourceContainer", "required"}}},
		{"volumesFrom exists", func(t td) { db(t).VolumesFrom[0].SourceContainer = "cache" }, []FieldError{{c1 + ".volumesFrom[0].sourceContainer", `no container named "cache"`}}},
		{"volumesFrom itself", func(t td) { db(t).VolumesFrom[0].SourceContainer = "db" }, []FieldError{{c1 + ".volumesFrom[0].sourceContainer", "a container cannot mount its own volumes"}}},

		// dependsOn
		{"dependsOn name required", func(t td) { app(t).DependsOn[0].ContainerName = "" }, []FieldError{{c0 + ".dependsOn[0].containerName", "required"}}},
		{"dependsOn target exists", func(t td) { app(t).DependsOn[0].ContainerName = "cache" }, []FieldError{{c0 + ".dependsOn[0].containerName", `no container named "cache"`}}},
		{"dependsOn itself", func(t td) { app(t).DependsOn[0].ContainerName = "app" }, []FieldError{{c0 + ".dependsOn[0].containerName", "a container cannot depend on itself"}}},
		{"dependsOn condition required", func(t td) { app(t).DependsOn[0].Condition = "" }, []FieldError{{c0 + ".dependsOn[0].condition", "required"}}},
		{"dependsOn condition value", func(t td) { app(t).DependsOn[0].Condition = "RUNNING" }, []FieldError{{c0 + ".dependsOn[0].condition", `must be one of START, COMPLETE, SUCCESS, HEALTHY (got "RUNNING")`}}},
		{"COMPLETE on essential", func(t td) { app(t).DependsOn[0].Condition = "COMPLETE" }, []FieldError{{c0 + ".dependsOn[0].condition", `COMPLETE cannot be used on essential container "db"`}}},
		{"SUCCESS on essential", func(t td) { app(t).DependsOn[0].Condition = "SUCCESS" }, []FieldError{{c0 + ".dependsOn[0].condition", `SUCCESS cannot be used on essential container "db"`}}},
		{"SUCCESS on non-essential", func(t td) { app(t).DependsOn[0].Condition = "SUCCESS"; db(t).Essential = proto.Bool(false) }, nil},
		{"HEALTHY needs a health check", func(t td) { db(t).HealthCheck = nil }, []FieldError{{c0 + ".dependsOn[0].condition", `HEALTHY needs a healthCheck on container "db"`}}},
		{"HEALTHY with NONE check", func(t td) { db(t).HealthCheck = &orchv1.HealthCheck{Command: []string{"NONE"}} }, []FieldError{{c0 + ".dependsOn[0].condition", `HEALTHY needs a healthCheck on container "db"`}}},
		{"dependency cycle", func(t td) {
			db(t).DependsOn = []*orchv1.ContainerDependency{{ContainerName: "app", Condition: "START"}}
		}, []FieldError{{c1 + ".dependsOn", "dependency cycle: app -> db -> app"}}},
		{"longer cycle", func(t td) {
			t.ContainerDefinitions = append(t.ContainerDefinitions, &orchv1.ContainerDefinition{
				Name: "proxy", Image: "envoy", Memory: proto.Int32(64),
				DependsOn: []*orchv1.ContainerDependency{{ContainerName: "app", Condition: "START"}},
			})
			db(t).DependsOn = []*orchv1.ContainerDependency{{ContainerName: "proxy", Condition: "START"}}
		}, []FieldError{{"containerDefinitions[2].dependsOn", "dependency cycle: app -> db -> proxy -> app"}}},

		// health check
		{"health check command required", func(t td) { db(t).HealthCheck.Command = nil }, []FieldError{
			{c0 + ".dependsOn[0].condition", `HEALTHY needs a healthCheck on container "db"`},
			{c1 + ".healthCheck.command", "required"},
		}},
		{"health check kind", func(t td) { db(t).HealthCheck.Command = []string{"pg_isready"} }, []FieldError{{c1 + ".healthCheck.command[0]", `must be CMD, CMD-SHELL or NONE (got "pg_isready")`}}},
		{"health check command after CMD", func(t td) { db(t).HealthCheck.Command = []string{"CMD-SHELL"} }, []FieldError{{c1 + ".healthCheck.command", "CMD-SHELL must be followed by the command to run"}}},
		{"health check interval", func(t td) { db(t).HealthCheck.Interval = 4 }, []FieldError{{c1 + ".healthCheck.interval", "must be between 5 and 300 seconds"}}},
		{"health check timeout", func(t td) { db(t).HealthCheck.Timeout = 61 }, []FieldError{{c1 + ".healthCheck.timeout", "must be between 2 and 60 seconds"}}},
		{"health check retries", func(t td) { db(t).HealthCheck.Retries = 11 }, []FieldError{{c1 + ".healthCheck.retries", "must be between 1 and 10"}}},
		{"health check start period", func(t td) { db(t).HealthCheck.StartPeriod = 301 }, []FieldError{{c1 + ".healthCheck.startPeriod", "must be between 0 and 300 seconds"}}},
		{"health check defaults", func(t td) { db(t).HealthCheck = &orchv1.HealthCheck{Command: []string{"CMD", "true"}} }, nil},

		// ulimits
		{"ulimit name", func(t td) { app(t).Ulimits[0].Name = "files" }, []FieldError{{c0 + ".ulimits[0].name", `must be one of core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack (got "files")`}}},
		{"ulimit duplicate", func(t td) {
			app(t).Ulimits = append(app(t).Ulimits, &orchv1.Ulimit{Name: "nofile", SoftLimit: 1, HardLimit: 1})
		}, []FieldError{{c0 + ".ulimits[1].name", `duplicate ulimit "nofile"`}}},
		{"ulimit soft above hard", func(t td) { app(t).Ulimits[0].SoftLimit = 8192 }, []FieldError{{c0 + ".ulimits[0].softLimit", "must not exceed hardLimit (4096)"}}},
		{"ulimit unlimited hard", func(t td) { app(t).Ulimits[0].HardLimit = -1 }, nil},
		{"ulimit unlimited soft under a hard limit", func(t td) { app(t).Ulimits[0].SoftLimit = -1 }, []FieldError{{c0 + ".ulimits[0].softLimit", "must not exceed hardLimit (4096)"}}},
		{"ulimit negative", func(t td) { app(t).Ulimits[0].HardLimit = -2 }, []FieldError{{c0 + ".ulimits[0].hardLimit", "must be -1 (unlimited) or more"}}},

		// linux parameters
		{"capability unknown", func(t td) {
			app(t).LinuxParameters.Capabilities.Add = []string{"NET_ADMIN", "CAP_SYS_ADMIN", "net_raw", "FLY"}
		}, []FieldError{{c0 + ".linuxParameters.capabilities.add[3]", `unknown capability "FLY"`}}},
		{"capability drop unknown", func(t td) { app(t).LinuxParameters.Capabilities.Drop = []string{"CAP_"} }, []FieldError{{c0 + ".linuxParameters.capabilities.drop[0]", `unknown capability "CAP_"`}}},
		{"device host path required", func(t td) { app(t).LinuxParameters.Devices[0].HostPath = "" }, []FieldError{{c0 + ".linuxParameters.devices[0].hostPath", "required"}}},
		{"device host path absolute", func(t td) { app(t).LinuxParameters.Devices[0].HostPath = "dev/fuse" }, []FieldError{{c0 + ".linuxParameters.devices[0].hostPath", "must be an absolute path"}}},
		{"device container path absolute", func(t td) { app(t).LinuxParameters.Devices[0].ContainerPath = "fuse" }, []FieldError{{c0 + ".linuxParameters.devices[0].containerPath", "must be an absolute path"}}},
		{"device permissions", func(t td) { app(t).LinuxParameters.Devices[0].Permissions = []string{"read", "rw"} }, []FieldError{{c0 + ".linuxParameters.devices[0].permissions[1]", `must be one of read, write, mknod (got "rw")`}}},
		{"tmpfs container path", func(t td) { app(t).LinuxParameters.Tmpfs[0].ContainerPath = "run" }, []FieldError{{c0 + ".linuxParameters.tmpfs[0].containerPath", "must be an absolute path"}}},
		{"tmpfs container path required", func(t td) { app(t).LinuxParameters.Tmpfs[0].ContainerPath = "" }, []FieldError{{c0 + ".linuxParameters.tmpfs[0].containerPath", "required"}}},
		{"tmpfs size", func(t td) { app(t).LinuxParameters.Tmpfs[0].Size = 0 }, []FieldError{{c0 + ".linuxParameters.tmpfs[0].size", "must be greater than 0 (MiB)"}}},
		{"shared memory size", func(t td) { app(t).LinuxParameters.SharedMemorySize = -1 }, []FieldError{{c0 + ".linuxParameters.sharedMemorySize", "must not be negative"}}},
		{"max swap", func(t td) { app(t).LinuxParameters.MaxSwap = proto.Int32(-1) }, []FieldError{{c0 + ".linuxParameters.maxSwap", "must not be negative"}}},
		{"swappiness", func(t td) { app(t).LinuxParameters.Swappiness = proto.Int32(101) }, []FieldError{{c0 + ".linuxParameters.swappiness", "must be between 0 and 100"}}},

		// timeouts, logging and the rest
		{"stop timeout max", func(t td) { app(t).StopTimeout = proto.Int32(121) }, []FieldError{{c0 + ".stopTimeout", "must be between 0 and 120 seconds"}}},
		{"stop timeout negative", func(t td) { app(t).StopTimeout = proto.Int32(-1) }, []FieldError{{c0 + ".stopTimeout", "must be between 0 and 120 seconds"}}},
		{"start timeout", func(t td) { app(t).StartTimeout = proto.Int32(-1) }, []FieldError{{c0 + ".startTimeout", "must not be negative"}}},
		{"log driver", func(t td) { app(t).LogConfiguration.LogDriver = "" }, []FieldError{{c0 + ".logConfiguration.logDriver", "required"}}},
		{"log secret options", func(t td) { app(t).LogConfiguration.SecretOptions = []*orchv1.Secret{{Name: "token"}} }, []FieldError{{c0 + ".logConfiguration.secretOptions[0].valueFrom", "required"}}},
		{"extra hosts", func(t td) { app(t).ExtraHosts = []*orchv1.HostEntry{{Hostname: "db"}} }, []FieldError{{c0 + ".extraHosts[0].ipAddress", "required"}}},
		{"system controls", func(t td) { app(t).SystemControls = []*orchv1.SystemControl{{Value: "1"}} }, []FieldError{{c0 + ".systemControls[0].namespace", "required"}}},
		{"resource requirements", func(t td) { app(t).ResourceRequirements = []*orchv1.ResourceRequirement{{Type: "TPU", Value: "1"}} }, []FieldError{{c0 + ".resourceRequirements[0].type", `must be one of GPU, InferenceAccelerator (got "TPU")`}}},
		{"firelens type", func(t td) { app(t).FirelensConfiguration = &orchv1.FirelensConfiguration{Type: "vector"} }, []FieldError{{c0 + ".firelensConfiguration.type", `must be one of fluentd, fluentbit (got "vector")`}}},
		{"restart attempt period", func(t td) {
			app(t).RestartPolicy = &orchv1.ContainerRestartPolicy{Enabled: true, RestartAttemptPeriod: 30}
		}, []FieldError{{c0 + ".restartPolicy.restartAttemptPeriod", "must be between 60 and 1800 seconds"}}},
		{"version consistency", func(t td) { app(t).VersionConsistency = "on" }, []FieldError{{c0 + ".versionConsistency", `must be one of enabled, disabled (got "on")`}}},
		{"free-form structs are not checked", func(t td) {
			s, _ := structpb.NewStruct(map[string]any{"anything": "goes"})
			t.ProxyConfiguration = s
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			td := validTask()
			tt.mutate(td)
			err := Validate(td)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			assertFieldErrors(t, err, tt.want)
		})
	}
}

func TestValidateCollectsEveryProblem(t *testing.T) {
	td := &orchv1.TaskDefinition{
		NetworkMode: "bridge",
		ContainerDefinitions: []*orchv1.ContainerDefinition{
			{Name: "a", Memory: proto.Int32(128), MemoryReservation: proto.Int32(256)},
			{Name: "b", Image: "busybox"},
		},
	}
	err := Validate(td)
	assertFieldErrors(t, err, []FieldError{
		{"family", "required"},
		{"containerDefinitions[0].image", "required"},
		{"containerDefinitions[0].memory", "must be greater than memoryReservation (256)"},
		{"containerDefinitions[1].memory", "required: set memory or memoryReservation, or the task's memory"},
	})
	want := "family: required\n" +
		"containerDefinitions[0].image: required\n" +
		"containerDefinitions[0].memory: must be greater than memoryReservation (256)\n" +
		"containerDefinitions[1].memory: required: set memory or memoryReservation, or the task's memory"
	if err.Error() != want {
		t.Errorf("Error():\n%s\nwant:\n%s", err, want)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Error("ValidationError does not match ErrInvalid")
	}
}

func TestValidateNil(t *testing.T) {
	if err := Validate(nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Validate(nil) = %v", err)
	}
}
