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
{{- printf "%s-kafka-bootstrap.%s.svc:9093" (include "pt.strimziCluster" .) .Release.Namespace -}}
{{- else -}}
{{- .Values.kafka.external.bootstrapServers -}}
{{- end -}}
{{- end -}}

{{/* How our clients authenticate to Kafka, resolved for both modes:
     dict protocol, mechanism, username, passwordSecret, passwordKey, caSecret, caKey, clientSecret.
     Strimzi: its TLS listener with the KafkaUser's SCRAM-SHA-512 password and the cluster CA. */}}
{{- define "pt.kafkaSecurity" -}}
{{- if eq .Values.kafka.mode "strimzi" -}}
{{- $cluster := include "pt.strimziCluster" . -}}
{{- toYaml (dict "protocol" "SASL_SSL" "mechanism" "SCRAM-SHA-512" "username" (include "pt.kafkaUser" .)
      "passwordSecret" (include "pt.kafkaUser" .) "passwordKey" "password"
      "caSecret" (printf "%s-cluster-ca-cert" $cluster) "caKey" "ca.crt" "clientSecret" "") -}}
{{- else -}}
{{- $e := .Values.kafka.external -}}
{{- $sasl := hasPrefix "SASL_" $e.securityProtocol -}}
{{- $tls := has $e.securityProtocol (list "SSL" "SASL_SSL") -}}
{{- toYaml (dict "protocol" $e.securityProtocol
      "mechanism" (ternary $e.sasl.mechanism "" $sasl) "username" (ternary $e.sasl.username "" $sasl)
      "passwordSecret" (ternary $e.sasl.existingSecret "" $sasl) "passwordKey" $e.sasl.passwordKey
      "caSecret" (ternary $e.tls.caSecret "" $tls) "caKey" $e.tls.caKey
      "clientSecret" (ternary $e.tls.clientSecret "" $tls)) -}}
{{- end -}}
{{- end -}}

{{- define "pt.kafkaUser" -}}
{{- default (include "pt.fullname" .) .Values.kafka.strimzi.user.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The API token's Secret: the user's, or the one this chart generates. */}}
{{- define "pt.apiTokenSecret" -}}
{{- default (include "pt.component" (dict "root" . "component" "api")) .Values.api.existingSecret -}}
{{- end -}}

{{/* Secrets as files under /var/run/secrets/pioneer, as the settings' *_FILE variables read them:
     include "pt.secretSources" (dict "root" $ "kafka" true "api" true); empty when none is needed. */}}
{{- define "pt.secretSources" -}}
{{- $root := .root -}}
{{- if .kafka -}}
{{- $k := include "pt.kafkaSecurity" $root | fromYaml -}}
{{- if $k.passwordSecret }}
- secret:
    name: {{ $k.passwordSecret }}
    items: [{key: {{ $k.passwordKey }}, path: kafka-password}]
{{- end }}
{{- if $k.caSecret }}
- secret:
    name: {{ $k.caSecret }}
    items: [{key: {{ $k.caKey }}, path: kafka-ca.crt}]
{{- end }}
{{- if $k.clientSecret }}
- secret:
    name: {{ $k.clientSecret }}
    items: [{key: tls.crt, path: kafka-client.crt}, {key: tls.key, path: kafka-client.key}]
{{- end }}
{{- end }}
{{- if .api }}
- secret:
    name: {{ include "pt.apiTokenSecret" $root }}
    items: [{key: {{ $root.Values.api.tokenKey }}, path: api-token}]
{{- end }}
{{- end -}}

{{/* The volume (and its mount) for pt.secretSources; nothing when there are no sources. */}}
{{- define "pt.secretsVolume" -}}
{{- $sources := include "pt.secretSources" . | trim -}}
{{- if $sources -}}
- name: secrets
  projected:
    defaultMode: 0440  # group: the pods' fsGroup
    sources:
      {{- $sources | nindent 6 }}
{{- end }}
{{- end -}}

{{- define "pt.secretsMount" -}}
{{- if trim (include "pt.secretSources" .) -}}
- name: secrets
  mountPath: /var/run/secrets/pioneer
  readOnly: true
{{- end }}
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
{{- $k := include "pt.kafkaSecurity" . | fromYaml }}
- name: PIONEER_KAFKA_SECURITY_PROTOCOL
  value: {{ $k.protocol | quote }}
{{- if $k.mechanism }}
- name: PIONEER_KAFKA_SASL_MECHANISM
  value: {{ $k.mechanism | quote }}
- name: PIONEER_KAFKA_SASL_USERNAME
  value: {{ $k.username | quote }}
- name: PIONEER_KAFKA_SASL_PASSWORD_FILE
  value: /var/run/secrets/pioneer/kafka-password
{{- end }}
{{- if $k.caSecret }}
- name: PIONEER_KAFKA_SSL_CAFILE
  value: /var/run/secrets/pioneer/kafka-ca.crt
{{- end }}
{{- if $k.clientSecret }}
- name: PIONEER_KAFKA_SSL_CERTFILE
  value: /var/run/secrets/pioneer/kafka-client.crt
- name: PIONEER_KAFKA_SSL_KEYFILE
  value: /var/run/secrets/pioneer/kafka-client.key
{{- end }}
{{- end -}}

{{/* Values that cannot work are refused here, with the reason, instead of rendering a broken release. */}}
{{- define "pt.validate" -}}
{{- $e := .Values.kafka.external -}}
{{- if and (eq .Values.kafka.mode "external") (hasPrefix "SASL_" $e.securityProtocol) (not (and $e.sasl.username $e.sasl.existingSecret)) -}}
{{- fail (printf "kafka.external.securityProtocol=%s needs kafka.external.sasl.username and sasl.existingSecret (a Secret holding the password); set securityProtocol=PLAINTEXT only for a Kafka that is not shared" $e.securityProtocol) -}}
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
