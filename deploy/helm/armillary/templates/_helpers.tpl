{{/* Names, labels and the pieces every Armillary pod shares. */}}

{{- define "armillary.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "armillary.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "armillary.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "armillary.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The six API services and their ports (kit/settings.py SERVICE_PORTS). */}}
{{- define "armillary.servicePorts" -}}
identity: 8101
data: 8102
workflows: 8103
registry: 8104
serving: 8105
tracking: 8106
{{- end -}}

{{/* The web console's port (kit/settings.py CONSOLE_PORT): not a service (no schema, no
key), but the gateway calls it like one. */}}
{{- define "armillary.consolePort" -}}8107{{- end -}}

{{/* Who each process calls over HTTP (services.py): NetworkPolicies allow exactly these. */}}
{{- define "armillary.calls" -}}
identity: []
data: [identity]
workflows: [identity, data]
registry: [identity, data, workflows]
serving: [identity, registry]
tracking: [identity, registry]
scheduler: [identity, data]
worker: [identity, data]
gateway: [identity, data, workflows, registry, serving, tracking, console]
{{- end -}}

{{/* Components that read or write the object store (tracking: its runs' artifacts). */}}
{{- define "armillary.storageUsers" -}}
[data, workflows, registry, serving, tracking, scheduler, worker]
{{- end -}}

{{- define "armillary.componentName" -}}
{{- printf "%s-%s" (include "armillary.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "armillary.selectorLabels" -}}
app.kubernetes.io/name: {{ include "armillary.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "armillary.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "armillary.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: armillary
{{- end -}}

{{- define "armillary.image" -}}
{{- $repository := index .root.Values.image.repositories .image -}}
{{- printf "%s:%s" $repository (default .root.Chart.AppVersion .root.Values.image.tag) -}}
{{- end -}}

{{- define "armillary.platformSecretName" -}}
{{- if eq .Values.secrets.source "existingSecret" -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- printf "%s-platform" (include "armillary.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "armillary.serviceKeySecretName" -}}
{{- $existing := index .root.Values.serviceKeys.existingSecrets .service | default "" -}}
{{- if and (eq .root.Values.secrets.source "existingSecret") $existing -}}
{{- $existing -}}
{{- else -}}
{{- printf "%s-%s-key" (include "armillary.fullname" .root) .service -}}
{{- end -}}
{{- end -}}

{{/* The pod-level context of the restricted Pod Security Standard. */}}
{{- define "armillary.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
fsGroup: {{ .Values.podSecurityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "armillary.containerSecurityContext" -}}
runAsNonRoot: true
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Environment of every Armillary process: the ConfigMap, and each secret setting as a
file (ARMILLARY_<SETTING>_FILE), so no secret value sits in the environment. */}}
{{- define "armillary.env" -}}
- name: ARMILLARY_HOME
  value: /var/lib/armillary
- name: ARMILLARY_SERVICE_PUBLIC_KEYS_DIR
  value: /etc/armillary/service-keys
{{- range $setting, $_ := .root.Values.secrets.settings }}
- name: {{ printf "ARMILLARY_%s_FILE" (upper $setting) }}
  value: {{ printf "/var/run/armillary/secrets/%s" $setting }}
{{- end }}
{{- include "armillary.databaseCaEnv" .root }}
{{- if .keyOf }}
- name: ARMILLARY_SERVICE_KEY_FILE
  value: /var/run/armillary/service-key/service.key
{{- end }}
{{- end -}}

{{- define "armillary.envFrom" -}}
- configMapRef:
    name: {{ include "armillary.fullname" .root }}-config
{{- end -}}

{{/* Writable space a read-only root needs, the secrets, and the public keys. */}}
{{- define "armillary.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /var/lib/armillary
- name: platform-secrets
  mountPath: /var/run/armillary/secrets
  readOnly: true
- name: service-public-keys
  mountPath: /etc/armillary/service-keys
  readOnly: true
{{- include "armillary.databaseCaMount" .root }}
{{- if .keyOf }}
- name: service-key
  mountPath: /var/run/armillary/service-key
  readOnly: true
{{- end }}
{{- end -}}

{{- define "armillary.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .tmpSize | default "1Gi" }}
- name: home
  emptyDir:
    sizeLimit: {{ .homeSize | default "1Gi" }}
- name: platform-secrets
  secret:
    secretName: {{ include "armillary.platformSecretName" .root }}
    defaultMode: 0440
- name: service-public-keys
  configMap:
    name: {{ include "armillary.fullname" .root }}-service-public-keys
{{- include "armillary.databaseCaVolume" .root }}
{{- if .keyOf }}
- name: service-key
  secret:
    secretName: {{ include "armillary.serviceKeySecretName" (dict "root" .root "service" .keyOf) }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{- define "armillary.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "armillary.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Liveness of a process without an HTTP API: its metrics listener binds loopback only
(app.py _serve_metrics), so the probe runs inside the container. */}}
{{- define "armillary.metricsExecProbe" -}}
exec:
  command:
    - python3
    - -c
    - import urllib.request; urllib.request.urlopen("http://127.0.0.1:9464/metrics", timeout=3)
periodSeconds: 15
timeoutSeconds: 5
failureThreshold: 4
{{- end -}}

{{- define "armillary.componentPeer" -}}
- podSelector:
    matchLabels:
      {{- include "armillary.selectorLabels" . | nindent 6 }}
{{- end -}}

{{/* Egress to the API services (and the console) a component calls, on each one's port. */}}
{{- define "armillary.callEgress" -}}
{{- $ports := include "armillary.servicePorts" .root | fromYaml -}}
{{- $_ := set $ports "console" (include "armillary.consolePort" .root | int) -}}
{{- range $callee := .callees }}
- to:
    {{- include "armillary.componentPeer" (dict "root" $.root "component" $callee) | nindent 4 }}
  ports:
    - {protocol: TCP, port: {{ index $ports $callee }}}
{{- end }}
{{- end -}}

{{/* Egress to PostgreSQL, Redis, RabbitMQ and, for components that use it, the object store. */}}
{{- define "armillary.storeEgress" -}}
{{- $np := .root.Values.networkPolicy -}}
{{- $stores := list "postgresql" "redis" "rabbitmq" -}}
{{- if .objectStore }}{{ $stores = append $stores "objectStore" }}{{ end -}}
{{- range $store := $stores }}
{{- $rule := index $np $store }}
- to:
    {{- toYaml $rule.to | nindent 4 }}
  ports:
    {{- range $rule.ports }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
{{- end }}
{{- end -}}

{{/* A CPU HorizontalPodAutoscaler for the component's Deployment of the same name. */}}
{{- define "armillary.cpuAutoscaler" -}}
{{- $name := include "armillary.componentName" . -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  labels:
    {{- include "armillary.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicas: {{ .autoscaling.minReplicas }}
  maxReplicas: {{ .autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .autoscaling.targetCPUUtilizationPercentage }}
{{- end -}}

{{/* A PodDisruptionBudget over the component's pods (minAvailable or maxUnavailable). */}}
{{- define "armillary.disruptionBudget" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "armillary.componentName" . }}
  labels:
    {{- include "armillary.labels" . | nindent 4 }}
spec:
  {{- if hasKey .budget "minAvailable" }}
  minAvailable: {{ .budget.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .budget.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "armillary.selectorLabels" . | nindent 6 }}
{{- end -}}

{{/* PostgreSQL's CA bundle (verify-full), when the operator gives one. */}}
{{- define "armillary.databaseCaEnv" -}}
{{- with .Values.config.databaseCa.configMap }}
- name: ARMILLARY_DATABASE_CA_FILE
  value: /etc/armillary/database-ca/{{ $.Values.config.databaseCa.key }}
{{- end }}
{{- end -}}

{{- define "armillary.databaseCaMount" -}}
{{- with .Values.config.databaseCa.configMap }}
- name: database-ca
  mountPath: /etc/armillary/database-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "armillary.databaseCaVolume" -}}
{{- with .Values.config.databaseCa.configMap }}
- name: database-ca
  configMap:
    name: {{ . }}
{{- end }}
{{- end -}}
