"""The alert targets' renderings (Slack Block Kit, SNS e-mail) and the Slack webhook client."""
