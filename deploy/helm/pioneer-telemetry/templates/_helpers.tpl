{{/* Names */}}
{{- define "pt.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pt.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Resource name of a component: <fullname>-<component>, shortened to fit DNS labels. */}}
{{- define "pt.component" -}}
{{- printf "%s-%s" (include "pt.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pt.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "pt.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pioneer-telemetry
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: include "pt.selectorLabels" (dict "root" $ "component" "worker") */}}
{{- define "pt.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pt.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "pt.componentLabels" -}}
{{ include "pt.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "pt.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "pt.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "pt.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Kafka */}}
{{- define "pt.strimziCluster" -}}
{{- default (printf "%s-kafka" (include "pt.fullname" .)) .Values.kafka.strimzi.clusterName | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "pt.kafkaBootstrap" -}}
{{- if eq .Values.kafka.mode "strimzi" -}}
{{- printf "%s-kafka-bootstrap.%s.svc:9092" (include "pt.strimziCluster" .) .Release.Namespace -}}
{{- else -}}
{{- .Values.kafka.external.bootstrapServers -}}
{{- end -}}
{{- end -}}

{{/* How topics are created: job | strimzi | none (resolves auto). */}}
{{- define "pt.topicsMode" -}}
{{- if eq .Values.topics.create "auto" -}}
{{- if eq .Values.kafka.mode "strimzi" }}strimzi{{ else }}job{{ end -}}
{{- else -}}
{{- .Values.topics.create -}}
{{- end -}}
{{- end -}}

{{/* Settings every Kafka client shares: bootstrap and topics (KafkaSettings, TopicSettings). */}}
{{- define "pt.kafkaEnv" -}}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ include "pt.kafkaBootstrap" . | quote }}
- name: PIONEER_TOPICS_RAW
  value: {{ .Values.topics.raw | quote }}
- name: PIONEER_TOPICS_EVENTS
  value: {{ .Values.topics.events | quote }}
- name: PIONEER_TOPICS_DEADLETTER
  value: {{ .Values.topics.deadletter | quote }}
- name: PIONEER_TOPICS_AGGREGATES
  value: {{ .Values.topics.aggregates | quote }}
- name: PIONEER_TOPICS_PARTITIONS
  value: {{ .Values.topics.partitions | quote }}
- name: PIONEER_TOPICS_REPLICATION_FACTOR
  value: {{ .Values.topics.replicationFactor | quote }}
- name: PIONEER_TOPICS_RAW_RETENTION_DAYS
  value: {{ .Values.topics.rawRetentionDays | quote }}
{{- end -}}

{{/* Values that cannot work are refused here, with the reason, instead of rendering a broken release. */}}
{{- define "pt.validate" -}}
{{- if ne .Values.kafka.external.securityProtocol "PLAINTEXT" -}}
{{- fail (printf "kafka.external.securityProtocol=%s: pioneer-telemetry's Kafka clients (collector, worker, topics job) implement PLAINTEXT only; SASL/TLS client settings are not implemented yet (docs/kubernetes.md)" .Values.kafka.external.securityProtocol) -}}
{{- end -}}
{{- if and (eq .Values.kafka.mode "external") (not .Values.kafka.external.bootstrapServers) -}}
{{- fail "kafka.external.bootstrapServers is required with kafka.mode=external" -}}
{{- end -}}
{{- if gt (int .Values.worker.replicas) (int .Values.topics.partitions) -}}
{{- fail (printf "worker.replicas=%d is more than topics.partitions=%d: a worker without a partition idles" (int .Values.worker.replicas) (int .Values.topics.partitions)) -}}
{{- end -}}
{{- if and (eq .Values.kafka.mode "strimzi") (eq .Values.topics.create "job") -}}
{{- fail "topics.create=job needs a Kafka that exists before the release (a pre-install hook); with kafka.mode=strimzi use topics.create=strimzi (or auto)" -}}
{{- end -}}
{{- if and (eq .Values.topics.create "strimzi") (ne .Values.kafka.mode "strimzi") -}}
{{- fail "topics.create=strimzi needs kafka.mode=strimzi (KafkaTopic resources belong to a Strimzi Kafka)" -}}
{{- end -}}
{{- if and (eq .Values.kafka.mode "strimzi") (gt (int .Values.topics.replicationFactor) (int .Values.kafka.strimzi.nodePool.replicas)) -}}
{{- fail (printf "topics.replicationFactor=%d is more than the %d Strimzi brokers" (int .Values.topics.replicationFactor) (int .Values.kafka.strimzi.nodePool.replicas)) -}}
{{- end -}}
{{- if and .Values.dashboard.enabled .Values.dashboard.ingress.enabled (not .Values.dashboard.ingress.host) -}}
{{- fail "dashboard.ingress.host is required when dashboard.ingress.enabled" -}}
{{- end -}}
{{- $oidc := .Values.dashboard.oidc -}}
{{- if and .Values.dashboard.enabled $oidc.enabled -}}
{{- if not (and $oidc.clientId $oidc.serverMetadataUrl $oidc.existingSecret) -}}
{{- fail "dashboard.oidc.enabled needs dashboard.oidc.clientId, serverMetadataUrl and existingSecret" -}}
{{- end -}}
{{- if not (or $oidc.redirectUri .Values.dashboard.ingress.host) -}}
{{- fail "dashboard.oidc needs dashboard.oidc.redirectUri, or dashboard.ingress.host to derive it from" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.parser.logFormat .Values.parser.nebariConfig.configMap -}}
{{- fail "set parser.logFormat or parser.nebariConfig.configMap, not both (logFormat would win silently)" -}}
{{- end -}}
{{- end -}}

{{/* "/telemetry" from "telemetry", "/telemetry/" or "/telemetry"; "" stays "". */}}
{{- define "pt.dashboardBasePath" -}}
{{- $p := trimAll "/" .Values.dashboard.basePath -}}
{{- if $p }}/{{ $p }}{{ end -}}
{{- end -}}

{{/* Where Keycloak sends the browser back after login: Streamlit's /oauth2callback under the page. */}}
{{- define "pt.oidcRedirectUri" -}}
{{- if .Values.dashboard.oidc.redirectUri -}}
{{- .Values.dashboard.oidc.redirectUri -}}
{{- else -}}
{{- printf "https://%s%s/oauth2callback" .Values.dashboard.ingress.host (include "pt.dashboardBasePath" .) -}}
{{- end -}}
{{- end -}}
