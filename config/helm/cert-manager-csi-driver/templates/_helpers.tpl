{{/*
Object names are fixed: there is one driver per cluster (see values.yaml).
*/}}
{{- define "csi.name" -}}cert-manager-csi-driver{{- end }}

{{/* The CSI driver name: the CSIDriver object, the plugin directory, --driver-name's default. */}}
{{- define "csi.driverName" -}}csi.cert-manager.io{{- end }}

{{- define "csi.namespace" -}}{{ default .Release.Namespace .Values.namespace }}{{- end }}

{{- define "csi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "csi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "csi.labels" -}}
{{ include "csi.selectorLabels" . }}
app.kubernetes.io/component: csi-driver
app.kubernetes.io/part-of: cert-manager
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}: the digest wins when set.
Called with (dict "image" .Values.x.image "defaultTag" "...").
*/}}
{{- define "csi.image" -}}
{{- if .image.digest -}}
{{ .image.repository }}@{{ .image.digest }}
{{- else -}}
{{ .image.repository }}:{{ default .defaultTag .image.tag }}
{{- end -}}
{{- end }}

{{/* Kubelet paths, all derived from kubeletRootDir. */}}
{{- define "csi.pluginDir" -}}{{ .Values.kubeletRootDir }}/plugins/{{ include "csi.driverName" . }}{{- end }}
{{- define "csi.registrationDir" -}}{{ .Values.kubeletRootDir }}/plugins_registry{{- end }}
{{- define "csi.podsDir" -}}{{ .Values.kubeletRootDir }}/pods{{- end }}
