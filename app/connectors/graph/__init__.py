"""Microsoft Graph connector: credentials, a raw-page delta client and JSON-to-record mapping.

Kept import-light on purpose: `client` pulls in msgraph-sdk, which takes about a second to import.
"""
