{{- define "posttrain.labels" -}}
app.kubernetes.io/name: posttrain
app.kubernetes.io/part-of: posttrain
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}
