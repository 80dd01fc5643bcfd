{{/*
Chart name, truncated to 63 characters: the limit of a DNS label, which object names and label
values must respect.
*/}}
{{- define "nodeboot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every object name. The release name alone when it already contains the chart name, so
`helm install nodeboot` gives "nodeboot", not "nodeboot-nodeboot". Kept to 50 characters so the
longest suffix ("-leader-election") still fits in 63.
*/}}
{{- define "nodeboot.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "nodeboot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "nodeboot.labels" -}}
helm.sh/chart: {{ include "nodeboot.chart" . }}
{{ include "nodeboot.selectorLabels" . }}
app.kubernetes.io/version: {{ include "nodeboot.imageTag" . | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the operator's pods; they never change across upgrades. */}}
{{- define "nodeboot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nodeboot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "nodeboot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nodeboot.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "nodeboot.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "nodeboot.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository (include "nodeboot.imageTag" .) .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "nodeboot.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
The namespaces the operator watches, as a list: the release namespace unless watchNamespaces
names others. Rendered as YAML, read back with fromYamlArray.
*/}}
{{- define "nodeboot.watchNamespaces" -}}
{{- if .Values.watchNamespaces }}
{{- toYaml (uniq .Values.watchNamespaces) }}
{{- else }}
{{- toYaml (list .Release.Namespace) }}
{{- end }}
{{- end }}

{{- define "nodeboot.leaseName" -}}
{{- .Values.leaderElection.leaseName | default (printf "%s-leader" (include "nodeboot.fullname" .)) }}
{{- end }}

{{/*
What nodes are told to fetch from. Without a value, the pod's address: Kubernetes expands
$(POD_IP) in the container's arguments from the environment variable of that name.
*/}}
{{- define "nodeboot.advertiseURL" -}}
{{- .Values.boot.advertiseURL | default (printf "http://$(POD_IP):%v" .Values.boot.port) }}
{{- end }}

{{/*
The cluster-scoped ValidatingWebhookConfiguration: the release namespace in its name, so that
releases of the same name in two namespaces never share one.
*/}}
{{- define "nodeboot.webhookConfiguration" -}}
{{- printf "%s-%s" .Release.Namespace (include "nodeboot.fullname" .) }}
{{- end }}

{{- define "nodeboot.webhookCertSecret" -}}
{{- printf "%s-webhook-cert" (include "nodeboot.fullname" .) }}
{{- end }}
